#!/usr/bin/env bash
# Create (or reuse) the ECS emulator's virtualenv at <repo>/.venv/ecs-emulator.
# Idempotent and quick when the venv already has the pinned moto: it only checks a stamp file.
# Prints the venv's python path on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${ECS_EMU_VENV:-$root/.venv/ecs-emulator}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "ecs-emulator: $python not found; install Python 3.9+ with the venv module" >&2
  exit 2
fi
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "ecs-emulator: $python has no venv/ensurepip module (Debian: apt-get install python3-venv)" >&2
  exit 2
fi

# A lock so parallel test binaries create the venv once.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "ecs-emulator: creating $venv (pip install moto, ~30 s once)" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv/bin/python"
