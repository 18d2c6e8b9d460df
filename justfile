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
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the ScaleRequest CRD from the Rust type, with its copies for the chart and kustomize.
generate:
    cargo run --quiet -- crd > crds/scalerequest.yaml
    cp crds/scalerequest.yaml charts/machinist/crds/scalerequest.yaml
    cp crds/scalerequest.yaml config/crd/scalerequest.yaml

# Build the container image with podman from Debian packages (tools/image.sh); `just image --measure` also
# prints its size and the seconds from `podman run` to ready.
image *ARGS:
    tools/image.sh {{ARGS}}

# Print the OpenAPI document.
openapi:
    cargo run --quiet -- openapi

# Benchmarks (figures in BENCHMARKS.md).
bench:
    cargo bench


helm := "target/tools/helm/helm"
kubectl := "target/tools/kubectl/kubectl"
validate := ".venv/tools/bin/kubernetes-validate"

# Lint the Helm chart strictly.
chart-lint:
    tools/install-tools.sh
    {{helm}} lint --strict charts/machinist

# Render the chart (CRDs included) to target/manifests/chart.yaml and validate it; extra args go to helm.
chart-template *ARGS:
    tools/install-tools.sh
    mkdir -p target/manifests
    {{helm}} template machinist charts/machinist --namespace machinist --include-crds {{ARGS}} > target/manifests/chart.yaml
    {{validate}} -k 1.32.0 --strict --quiet target/manifests/chart.yaml
    @echo target/manifests/chart.yaml

# Render every kustomize overlay to target/manifests/<overlay>.yaml and validate them.
manifests:
    tools/install-tools.sh
    mkdir -p target/manifests
    for o in cluster-wide single-namespace ecs; do {{kubectl}} kustomize config/overlays/$o > target/manifests/$o.yaml; done
    {{validate}} -k 1.32.0 --strict --quiet target/manifests/cluster-wide.yaml target/manifests/single-namespace.yaml target/manifests/ecs.yaml
    @ls target/manifests/*.yaml
