# AuthSome: one binary, `authsome`. Multi-stage: a Rust builder with the dependency layer cached
# apart from the sources, then a slim runtime image holding only the binary and CA certificates.
#
#   docker build -t authsome .
#   docker run -p 8080:8080 -v authsome-data:/var/lib/authsome authsome
#
# Every setting is an AUTHSOME_* variable (see docs/guides/self-hosting.md).

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only: manifests plus empty targets, so this layer is rebuilt only when a
#    Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY crates/domain/Cargo.toml crates/domain/
COPY crates/storage/Cargo.toml crates/storage/
COPY crates/control/Cargo.toml crates/control/
COPY crates/identity/Cargo.toml crates/identity/
COPY crates/server/Cargo.toml crates/server/
COPY crates/authsome/Cargo.toml crates/authsome/
COPY crates/testkit/Cargo.toml crates/testkit/
RUN for c in domain storage control identity server testkit; do \
        mkdir -p "crates/$c/src" "crates/$c/benches" && touch "crates/$c/src/lib.rs"; \
    done \
    && mkdir -p crates/authsome/src && echo 'fn main() {}' > crates/authsome/src/main.rs \
    && echo 'fn main() {}' > crates/control/benches/key_verification.rs \
    && echo 'fn main() {}' > crates/identity/benches/identity.rs \
    && cargo build --release --locked -p authsome \
    && rm -rf crates

# 2. The sources.
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p authsome \
    && cp target/release/authsome /usr/local/bin/authsome

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 authsome \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/authsome authsome \
    && mkdir -p /var/lib/authsome \
    && chown authsome:authsome /var/lib/authsome
COPY --from=builder /usr/local/bin/authsome /usr/local/bin/authsome
USER 10001:10001
ENV AUTHSOME_LISTEN=0.0.0.0:8080 \
    AUTHSOME_DATA_DIR=/var/lib/authsome \
    AUTHSOME_LOG_FORMAT=json
VOLUME ["/var/lib/authsome"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["authsome", "healthcheck"]
ENTRYPOINT ["authsome"]
CMD ["serve"]
