#!/usr/bin/env bash
# What `machinist run` costs at N cached pods, for one or more builds: one sandbox (`--pods N`, from the
# first build), then each build in turn watching it: time from launch to /health/startup = 200, and VmRSS /
# VmHWM 3 s after ready. Environment for the operators only (an allocator's options, say) goes in OPERATOR_ENV.
#   tools/rss-at.sh PODS BINARY [BINARY...]
set -euo pipefail
PODS=$1; shift
d=$(mktemp -d)
SB=
trap 'kill $SB 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
RUST_LOG=warn "$1" sandbox --apiserver-only --no-demo --test-hooks --pods "$PODS" --kubeconfig "$d/kc" \
  >/dev/null 2>&1 &
SB=$!
for _ in $(seq 1 3000); do grep -q server: "$d/kc" 2>/dev/null && break; sleep 0.2; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for exe in "$@"; do
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  KUBECONFIG="$d/kc" RUST_LOG=warn env ${OPERATOR_ENV:-} "$exe" run --provider k8s --leader-election false \
    --http-listen "127.0.0.1:$port" >/dev/null 2>&1 &
  P=$!
  until curl -sf "http://127.0.0.1:$port/health/startup" >/dev/null; do sleep 0.02; done
  t=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
  sleep 3
  echo "$PODS pods, $exe ${OPERATOR_ENV:-}: ready after $t s, $(grep -E 'VmRSS|VmHWM' /proc/$P/status | tr -s ' \t\n' ' ')"
  kill $P; wait $P 2>/dev/null || true
done
