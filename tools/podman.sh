#!/usr/bin/env bash
# podman with the settings this project's machines need (../shared/CONTAINERS.md), and its storage under
# target/podman, so nothing outside the repository is touched: no ~/.config/containers, no /var/lib/containers.
#   - default_ulimits = []: podman otherwise raises nofile/nproc, which no runtime may do here (EPERM);
#   - runc with the cgroupfs manager: crun refuses the hybrid cgroup layout.
# Usage: tools/podman.sh ARGS...   (any podman subcommand: build, run, images, rmi, ...)
# Override the location with PODMAN_DIR. Needs podman and runc (Debian: apt-get install podman runc).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${PODMAN_DIR:-$ROOT/target/podman}"
mkdir -p "$DIR/storage" "$DIR/run" "$DIR/tmp"
CONF="$DIR/containers.conf"
[ -f "$CONF" ] || printf '[containers]\ndefault_ulimits = []\n\n[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' > "$CONF"
# A storage.conf of our own too: the graph root given on the command line alone would still read (and may
# complain about) the machine's /etc/containers/storage.conf options.
STORAGE_CONF="$DIR/storage.conf"
[ -f "$STORAGE_CONF" ] || printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
  "$DIR/storage" "$DIR/run" > "$STORAGE_CONF"
export CONTAINERS_CONF="$CONF" CONTAINERS_STORAGE_CONF="$STORAGE_CONF" TMPDIR="$DIR/tmp"
exec podman --cgroup-manager=cgroupfs --runtime runc \
  --root "$DIR/storage" --runroot "$DIR/run" --tmpdir "$DIR/tmp" "$@"
