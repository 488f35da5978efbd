# syntax=docker/dockerfile:1
# upkeep's image: the one the GitHub Action runs (ghcr.io/upkeep-bot/upkeep, built by
# .github/workflows/release.yml for linux/amd64 and linux/arm64).
#
# The build stage compiles a statically linked binary for musl: Alpine's Rust image targets
# x86_64/aarch64-unknown-linux-musl natively, and musl binaries link the C runtime statically.
# libgit2 and OpenSSL are vendored by Cargo.toml's git2 features (vendored-libgit2,
# vendored-openssl); LIBZ_SYS_STATIC makes libz-sys build its bundled zlib instead of looking
# for a system one. The final stage is `scratch`: the binary, the CA bundle, the templates,
# a git config, an empty /tmp, and nothing else: no shell, no package manager.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-alpine AS build
# musl-dev and gcc: the C parts (ring, libgit2, zlib); perl and make: OpenSSL's own build.
RUN apk add --no-cache gcc musl-dev perl make ca-certificates
ENV LIBZ_SYS_STATIC=1
WORKDIR /src
COPY . .
# Cargo.toml's `dist` profile: fat LTO, one codegen unit, opt-level "s", stripped; this is
# what keeps the image under 25 MB (measured: 20.1 MB, against 28.9 MB for a stripped
# `--release` build).
RUN cargo build --profile dist --locked --bin upkeep
# Smoke test: it runs, and it needs no shared library (a static-pie has no NEEDED entry).
RUN ./target/dist/upkeep --version \
 && ! readelf -d target/dist/upkeep | grep -q NEEDED
# The final image's whole file system, laid out here because `scratch` has no shell to do it.
RUN mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/etc/upkeep/git /rootfs/usr/share/upkeep /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && cp target/dist/upkeep /rootfs/usr/local/bin/upkeep \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && cp docker/gitconfig /rootfs/etc/upkeep/git/config \
 && cp -r templates /rootfs/usr/share/upkeep/templates \
 && printf 'root:x:0:0:root:/:/sbin/nologin\nrunner:x:1001:1001:runner:/github/home:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nrunner:x:1001:\n' > /rootfs/etc/group

# Only the static binary, for the release's downloads: `docker buildx build --target binary
# --output type=local,dest=out .` writes out/upkeep.
FROM scratch AS binary
COPY --from=build /src/target/dist/upkeep /upkeep

FROM scratch
COPY --from=build /rootfs/ /
# rustls (reqwest, kube, octocrab) and libgit2's vendored OpenSSL both read the CA bundle here;
# OpenSSL's compiled-in default directory does not exist in this image. libgit2 reads
# $XDG_CONFIG_HOME/git/config, so /etc/upkeep/git/config: safe.directory for a workspace that
# belongs to another user (docker/gitconfig; tests/it/action.rs shows libgit2 honours it).
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs \
    XDG_CONFIG_HOME=/etc/upkeep
# Not root: uid 1001 is the `runner` user of GitHub-hosted runners, who owns the mounted
# workspace and $GITHUB_OUTPUT, so upkeep can write branches into .git and its step outputs.
USER 1001:1001
ENTRYPOINT ["/usr/local/bin/upkeep"]
CMD ["--help"]
