#!/usr/bin/env bash
# What the first sync costs each side: one sandbox (`--pods N`, from the first build, given 2 s to settle),
# then each build in turn watching it: time from launch to /health/startup = 200, the operator's CPU time by
# then, and the sandbox's CPU time over the same span (utime + stime from /proc/<pid>/stat).
#   tools/sync-cpu.sh PODS BINARY [BINARY...]
set -euo pipefail
PODS=$1; shift
d=$(mktemp -d)
RUST_LOG=warn "$1" sandbox --apiserver-only --no-demo --test-hooks --pods "$PODS" --kubeconfig "$d/kc" >/dev/null 2>&1 &
SB=$!
for _ in $(seq 1 3000); do grep -q server: "$d/kc" 2>/dev/null && break; sleep 0.2; done
sleep 2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
for exe in "$@"; do
  s0=$(cpu "$SB"); t0=$(date +%s.%N)
  KUBECONFIG="$d/kc" RUST_LOG=warn "$exe" run --provider k8s --leader-election false --http-listen "127.0.0.1:$port" >/dev/null 2>&1 &
  P=$!
  until curl -sf "http://127.0.0.1:$port/health/startup" >/dev/null; do sleep 0.02; done
  t=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
  echo "$exe: ready $t s, operator cpu $(cpu "$P") s, sandbox cpu $(python3 -c "print(round($(cpu "$SB")-$s0,2))") s"
  kill "$P"; wait "$P" 2>/dev/null || true
done
kill "$SB"; wait 2>/dev/null || true; rm -rf "$d"
