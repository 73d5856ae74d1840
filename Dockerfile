# Caregraph server image (release build, non-root, no shell tools beyond Debian slim).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin caregraph

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /var/lib/caregraph caregraph \
 && mkdir -p /var/lib/caregraph && chown caregraph /var/lib/caregraph
COPY --from=build /src/target/release/caregraph /usr/local/bin/caregraph
USER caregraph
WORKDIR /var/lib/caregraph
ENV BIND_ADDR=0.0.0.0:8080 DATA_DIR=/var/lib/caregraph
EXPOSE 8080
ENTRYPOINT ["caregraph"]
CMD ["serve"]
