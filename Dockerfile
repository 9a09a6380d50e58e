# The tachyon binary in a small image; every role is a command of it (see infra/compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tachyon

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/tachyon tachyon && mkdir -p /var/lib/tachyon && chown tachyon /var/lib/tachyon
COPY --from=build /src/target/release/tachyon /usr/local/bin/tachyon
USER tachyon
WORKDIR /var/lib/tachyon
ENV TACHYON_DATA_DIR=/var/lib/tachyon TACHYON_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["tachyon"]
CMD ["run"]
