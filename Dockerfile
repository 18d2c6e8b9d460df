# syntax=docker/dockerfile:1
# machinist container image: the one binary on a distroless base (glibc, CA certificates, a nonroot user; no
# shell, no package manager), running as UID 65532.
#
# Users, with network access to public registries:
#   docker build -t machinist:0.1.0 .
# builds the binary in rust:1.95-bookworm and copies it onto gcr.io/distroless/cc-debian12:nonroot.
#
# Without a registry (the project's machines), `tools/image.sh` (`just image`) builds a base with the same
# contents from Debian packages, builds the binary on the host, and runs:
#   podman build --build-arg RUNTIME_IMAGE=localhost/machinist-base:bookworm --build-arg BINARY_SOURCE=prebuilt .
# BINARY_SOURCE=prebuilt copies target/release/machinist instead of compiling in a container (which would
# rebuild the whole dependency tree).

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# `build` (compile in BUILDER_IMAGE) or `prebuilt` (copy target/release/machinist from the build context).
ARG BINARY_SOURCE=build

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin machinist \
    && cp target/release/machinist /machinist
RUN /machinist --version

# Only the binary enters this stage's context: the build stage above is skipped by BuildKit and buildah
# when BINARY_SOURCE=prebuilt, as no later stage uses it.
FROM scratch AS prebuilt
COPY target/release/machinist /machinist

FROM ${BINARY_SOURCE} AS binary

FROM ${RUNTIME_IMAGE}
COPY --from=binary /machinist /usr/local/bin/machinist
# distroless' nonroot user; the manifests also set runAsUser 65532 and runAsNonRoot.
USER 65532:65532
EXPOSE 3042
ENV PLT_LISTEN=0.0.0.0:3042
ENTRYPOINT ["/usr/local/bin/machinist"]
CMD ["run"]
