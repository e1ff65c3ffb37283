# authgate's container image: built from source in a Rust image, run from distroless
# (no shell, no package manager), as a non-root user. No HEALTHCHECK: Kubernetes probes
# authgate (`/healthz`, `/readyz`, gRPC health), see helm/authgate.
#
# Build arguments:
#   RUST_VERSION  the Rust toolchain of the build stage (default: the one CI uses)
#   PROFILE       cargo profile: release (default) or another profile of Cargo.toml
#
#   docker build -t authgate:0.1.0 .
#   docker build --build-arg RUST_VERSION=1.95 -t authgate:dev .
#
# The binary is `make build`'s: `cargo build --release --locked` (the same command, the
# same Cargo.lock), so what runs in the image is what the tests built and ran.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG PROFILE=release
WORKDIR /src
# Dependencies first, in their own layer: they change far less often than the code.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY benches/ benches/
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --locked --profile "${PROFILE}" --bin authgate \
    && rm -rf src
COPY src/ src/
RUN touch src/main.rs src/lib.rs \
    && cargo build --locked --profile "${PROFILE}" --bin authgate \
    && cp "target/$([ "${PROFILE}" = dev ] && echo debug || echo "${PROFILE}")/authgate" /authgate

# glibc and libgcc (the binary links them dynamically), CA certificates for the
# provider's and Redis's TLS, and the `nonroot` user (65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /authgate /usr/local/bin/authgate
USER 65532:65532
EXPOSE 9001 8080 9090
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["serve", "--config", "/etc/authgate/authgate.yaml"]
