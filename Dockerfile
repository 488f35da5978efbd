# upkeep as a container: the GitHub Action's image. The binary needs nothing from the system
# but CA certificates (rustls; git2 with vendored libgit2).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/upkeep

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && printf '[safe]\n\tdirectory = *\n' > /etc/gitconfig
# The workspace GitHub mounts belongs to the runner's user, not the container's root: without
# safe.directory, libgit2 refuses to open it.
COPY --from=build /src/target/release/upkeep /usr/local/bin/upkeep
COPY --from=build /src/templates /usr/share/upkeep/templates
ENTRYPOINT ["/usr/local/bin/upkeep"]
