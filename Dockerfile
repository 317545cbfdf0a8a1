# Builds every Aloft binary (aloft, aloft-admin, aloft-propeller, aloft-scheduler, aloft-catalog) into one
# small, non-root runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home aloft
COPY --from=build /src/target/release/aloft /src/target/release/aloft-admin /src/target/release/aloft-propeller \
     /src/target/release/aloft-scheduler /src/target/release/aloft-catalog /usr/local/bin/
USER aloft
WORKDIR /home/aloft
