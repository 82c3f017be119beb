# Build: docker build -t huimin .
# Run:   docker run -p 8080:8080 -v huimin-data:/data huimin
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY crates crates
COPY src src
COPY migrations migrations
COPY fhir-profiles fhir-profiles
COPY benches benches
RUN cargo build --release --locked --bin huimin

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data huimin && mkdir -p /data && chown huimin /data
COPY --from=build /src/target/release/huimin /usr/local/bin/huimin
USER huimin
WORKDIR /data
ENV HUIMIN_LISTEN=0.0.0.0:8080 HUIMIN_DATA_DIR=/data HUIMIN_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["huimin"]
CMD ["serve"]
