#!/usr/bin/env bash
# A/B of two machinist builds on the read path: one sandbox (`--pods N`, from the first build), both
# operators watching it on their own ports, wrk (`-t2 -c32 --latency`) on GET machine-by-id and the
# controller list, alternating between the builds ROUNDS times so that the box's drift hits both alike.
#   tools/ab-reads.sh OLD_BINARY NEW_BINARY [PODS=3000] [ROUNDS=3] [DURATION=8s]
# Needs wrk and curl; binds 127.0.0.1 only. Prints one line per run: build, path, p99, req/s.
set -euo pipefail
OLD=$1; NEW=$2; PODS=${3:-3000}; ROUNDS=${4:-3}; DUR=${5:-8s}
d=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RUST_LOG=warn "$OLD" sandbox --apiserver-only --no-demo --test-hooks --pods "$PODS" --kubeconfig "$d/kc" \
  >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 3000); do grep -q server: "$d/kc" 2>/dev/null && break; sleep 0.2; done
declare -A port
for build in old new; do
  exe=$OLD; [ $build = new ] && exe=$NEW
  port[$build]=$(free_port)
  KUBECONFIG="$d/kc" RUST_LOG=warn "$exe" run --provider k8s --leader-election false \
    --http-listen "127.0.0.1:${port[$build]}" \
    --rate-limit-reads-identity 0 --rate-limit-reads-ip 0 --rate-limit-reads-global 0 >/dev/null 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:${port[$build]}/health/startup" >/dev/null; do sleep 0.05; done
done
id=$(curl -s "http://127.0.0.1:${port[old]}/k8s/machines/load" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
for r in $(seq 1 "$ROUNDS"); do
  for build in old new; do
    for path in "/k8s/machines/load/$id" /k8s/controllers/load; do
      out=$(wrk -t2 -c32 -d"$DUR" --latency "http://127.0.0.1:${port[$build]}$path")
      echo "round $r $build $path $(echo "$out" | awk '/ 99%/{print "p99 "$2} /Requests\/sec/{print $2" req/s"}' | tr '\n' ' ')"
    done
  done
done
