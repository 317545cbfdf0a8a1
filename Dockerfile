# Builds every Aloft binary (aloft, aloft-admin, aloft-propeller, aloft-scheduler, aloft-catalog,
# aloft-notifier) into one small, non-root runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home aloft \
    && mkdir -p /var/lib/aloft/blobs && chown aloft /var/lib/aloft/blobs
COPY --from=build /src/target/release/aloft /src/target/release/aloft-admin /src/target/release/aloft-propeller \
     /src/target/release/aloft-scheduler /src/target/release/aloft-catalog /src/target/release/aloft-notifier \
     /usr/local/bin/
COPY --from=build /src/examples /usr/share/aloft/examples
USER aloft
WORKDIR /home/aloft
# Every service serves /healthz, /readyz and /metrics here; the health check asks the running service.
ENV ALOFT_OPS_LISTEN=0.0.0.0:9464
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz >/dev/null || exit 1
