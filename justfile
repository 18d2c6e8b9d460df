# Recipes mirror the README's commands; `cargo` alone works too (just is optional: `cargo install just`).

# Run machinist on the embedded sandbox cluster with demo workloads.
sandbox *ARGS:
    cargo run --release -- sandbox {{ARGS}}

# The test suite (what CI runs).
test:
    cargo test

# Format, lint and test, as .ci/run does.
ci:
    bash .ci/run

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Regenerate the ScaleRequest CRD from the Rust type.
generate:
    cargo run --quiet -- crd > crds/scalerequest.yaml
    cp crds/scalerequest.yaml charts/machinist/crds/scalerequest.yaml

# Print the OpenAPI document.
openapi:
    cargo run --quiet -- openapi

# Benchmarks (figures in BENCHMARKS.md).
bench:
    cargo bench
