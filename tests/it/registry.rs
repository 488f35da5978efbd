//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8), started on a
//! free loopback port with its storage in a temporary directory, optionally behind htpasswd
//! basic auth, and a helper that pushes Helm chart tags through the registry's HTTP API.
//! `scripts/test.sh` installs the package when it is missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A running registry; stopped on drop.
pub(crate) struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    credentials: Option<(String, String)>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    for candidate in ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "Debian's docker-registry is not installed: run scripts/test.sh, which installs it (apt-get install docker-registry)"
    );
}

impl Registry {
    /// Start a registry; with `credentials`, behind htpasswd basic auth.
    pub(crate) fn start(credentials: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let hash = bcrypt::hash(password, 5).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: upkeep-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary())
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let registry = Registry { child, _dir: dir, base, credentials: credentials.map(|(u, p)| (u.into(), p.into())) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn request(&self, client: &reqwest::Client, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let builder = client.request(method, url);
        match &self.credentials {
            Some((u, p)) => builder.basic_auth(u, Some(p)),
            None => builder,
        }
    }

    async fn push_blob(&self, client: &reqwest::Client, name: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>());
        let start = self
            .request(client, reqwest::Method::POST, &format!("{}/v2/{name}/blobs/uploads/", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status().as_u16(), 202, "blob upload start");
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .request(client, reqwest::Method::PUT, &format!("{location}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 201, "blob upload");
        digest
    }

    /// Push a (tiny) Helm chart under each tag.
    pub(crate) async fn push_chart(&self, name: &str, tags: &[&str]) {
        // upkeep's reqwest has no default crypto provider: install the one upkeep uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        for tag in tags {
            let config = format!(
                "{{\"name\":\"{}\",\"version\":\"{tag}\",\"apiVersion\":\"v2\"}}",
                name.rsplit('/').next().unwrap()
            );
            let layer = format!("chart {name} {tag}");
            let config_digest = self.push_blob(&client, name, config.as_bytes()).await;
            let layer_digest = self.push_blob(&client, name, layer.as_bytes()).await;
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
                config.len(),
                layer.len()
            );
            let put = self
                .request(&client, reqwest::Method::PUT, &format!("{}/v2/{name}/manifests/{tag}", self.base))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest)
                .send()
                .await
                .unwrap();
            assert_eq!(put.status().as_u16(), 201, "manifest {tag}: {}", put.text().await.unwrap_or_default());
        }
    }
}
