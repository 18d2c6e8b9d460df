# syntax=docker/dockerfile:1
# machinist container image: a static musl build of the one binary on distroless/static, running as non-root.
#   docker build -t machinist:0.1.0 .
# The final image holds the binary, CA certificates and /etc/passwd (from distroless), nothing else: no shell,
# no package manager.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# ring (rustls' crypto) compiles C; musl targets link statically by default.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin machinist \
    && cp target/release/machinist /machinist
# The final image has no libc: the binary must run without one.
RUN /machinist --version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /machinist /usr/local/bin/machinist
# distroless' nonroot user; the manifests also set runAsUser 65532 and runAsNonRoot.
USER 65532:65532
EXPOSE 3042
ENV PLT_LISTEN=0.0.0.0:3042
ENTRYPOINT ["/usr/local/bin/machinist"]
CMD ["run"]
