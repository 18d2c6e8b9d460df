#!/usr/bin/env bash
# Builds the machinist container image with podman, from Debian packages and the host's Rust toolchain only:
# no container registry is needed (../shared/CONTAINERS.md).
#   1. the base, localhost/machinist-base:bookworm: what gcr.io/distroless/cc holds (glibc, libgcc, CA bundle,
#      tzdata, a nonroot user 65532), unpacked by `mmdebstrap --variant=extract` and `podman import`ed. Built
#      once; REBUILD_BASE=1 rebuilds it (for Debian security updates).
#   2. the release binary, `cargo build --release --locked` on the host;
#   3. the repository's Dockerfile with RUNTIME_IMAGE=<that base> and BINARY_SOURCE=prebuilt.
# Usage: tools/image.sh [--measure]     (also `just image`)
#   --measure  prints the image size and the seconds from `podman run` to /health/readiness 200, against a
#              `machinist sandbox --apiserver-only` it starts on 127.0.0.1.
# Environment: IMAGE (default localhost/machinist:<version>); MACHINIST_BINARY, a binary to use instead of
# building the release one (tests/image.rs passes its own build); DEBIAN_MIRROR; PODMAN_DIR (tools/podman.sh).
# Needs podman, runc and mmdebstrap (Debian: apt-get install podman runc mmdebstrap).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PODMAN="$ROOT/tools/podman.sh"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
IMAGE="${IMAGE:-localhost/machinist:$VERSION}"
BASE="localhost/machinist-base:bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$ROOT/target/podman/work"
MEASURE=0
for arg in "$@"; do
  case "$arg" in
    --measure) MEASURE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "image.sh: $*" >&2; }

# One build at a time (a test and a developer may both run this): they share the base and the work dirs.
mkdir -p "$ROOT/target/podman"
exec 9>"$ROOT/target/podman/.image.lock"
flock 9

for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || { log "$tool is missing: apt-get install podman runc mmdebstrap"; exit 1; }
done

build_base() {
  rm -rf "$WORK" && mkdir -p "$WORK"
  local rootfs="$WORK/rootfs"
  log "unpacking the Debian base into $rootfs"
  # extract: unpack only, no maintainer scripts, so the files those scripts would make are added below.
  mmdebstrap --quiet --variant=extract \
    --include=libc6,libgcc-s1,ca-certificates,base-files,netbase,tzdata \
    --format=directory bookworm "$rootfs" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb ${MIRROR%/debian}/debian-security bookworm-security main"
  # distroless' users: root, nobody and nonroot (65532), with no login shell (there is none).
  cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GROUP
  install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  # What update-ca-certificates would write: every trusted certificate in one PEM bundle.
  mkdir -p "$rootfs/etc/ssl/certs"
  find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
    | xargs -0 cat > "$rootfs/etc/ssl/certs/ca-certificates.crt"
  grep -q 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt" || { log "empty CA bundle"; exit 1; }
  # Package-manager state a distroless image does not carry.
  rm -rf "$rootfs/var/lib/apt" "$rootfs/var/cache/apt" "$rootfs/var/log/"* "$rootfs/usr/share/man"
  tar -C "$rootfs" --numeric-owner -cf "$WORK/base.tar" .
  "$PODMAN" import --quiet "$WORK/base.tar" "$BASE" >/dev/null
  rm -rf "$WORK"
  log "built $BASE"
}

if [ "${REBUILD_BASE:-0}" = 1 ] || ! "$PODMAN" image exists "$BASE"; then
  build_base
else
  log "$BASE exists (REBUILD_BASE=1 rebuilds it)"
fi

BINARY="${MACHINIST_BINARY:-}"
if [ -z "$BINARY" ]; then
  log "building the release binary"
  cargo build --release --locked --bin machinist
  BINARY="$ROOT/target/release/machinist"
fi

# A context of the binary alone: the repository (target/ included) would be walked by every build.
CONTEXT="$ROOT/target/podman/context"
rm -rf "$CONTEXT" && mkdir -p "$CONTEXT/target/release"
cp "$BINARY" "$CONTEXT/target/release/machinist"
"$PODMAN" build --quiet --pull=never -f Dockerfile \
  --build-arg "RUNTIME_IMAGE=$BASE" --build-arg BINARY_SOURCE=prebuilt \
  -t "$IMAGE" "$CONTEXT" >/dev/null
rm -rf "$CONTEXT"
# The previous build of this tag, now untagged: each one holds a copy of the binary.
"$PODMAN" image prune --force >/dev/null
flock -u 9
log "built $IMAGE"
echo "$IMAGE"

[ "$MEASURE" = 1 ] || exit 0

bytes="$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE")"
echo "image $IMAGE: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'))"

tmp="$(mktemp -d)"
cleanup() {
  "$PODMAN" rm -f -t 0 machinist-measure >/dev/null 2>&1 || true
  [ -n "${sandbox_pid:-}" ] && kill "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
"$BINARY" sandbox --apiserver-only --kubeconfig "$tmp/kubeconfig" >"$tmp/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$tmp/kubeconfig" ] && break; sleep 0.1; done
[ -s "$tmp/kubeconfig" ] || { log "the sandbox did not start"; cat "$tmp/sandbox.log" >&2; exit 1; }
chmod 0644 "$tmp/kubeconfig"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
start="$(date +%s.%N)"
"$PODMAN" run -d --rm --name machinist-measure --network host --read-only --user 65532:65532 \
  -v "$tmp/kubeconfig:/etc/machinist/kubeconfig:ro" -e KUBECONFIG=/etc/machinist/kubeconfig \
  -e PLT_LISTEN="127.0.0.1:$port" -e PLT_LEADER_ELECTION=false "$IMAGE" run >/dev/null
ready=""
for _ in $(seq 600); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/readiness")" = 200 ]; then
    ready="$(date +%s.%N)"
    break
  fi
  sleep 0.05
done
[ -n "$ready" ] || { log "not ready within 30 s"; "$PODMAN" logs machinist-measure >&2; exit 1; }
awk -v s="$start" -v r="$ready" 'BEGIN { printf "podman run -> /health/readiness 200: %.2f s\n", r - s }'
