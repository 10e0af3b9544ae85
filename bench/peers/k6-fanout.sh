#!/bin/sh
# The k6 cross-check of `parley-bench peers`: starts a Parley node on
# loopback (the limits parley-bench gives local nodes), runs
# bench/testdata/k6/fanout.js against it, and prints the node's CPU seconds
# over the k6 run next to k6's summary, so that receipts per CPU second
# can be computed as the harness does. Compare with
#   parley-bench peers bench/testdata/peers-k6.yaml
# (the same shape: SUBS, RATE, SECONDS, SIZE).
set -eu
K6=${K6:-${PEERS_DIR:-$HOME/.cache/parley/peers}/k6}
PARLEY=${PARLEY:-bin/parley}
PORT=${PORT:-18391}
SUBS=${SUBS:-200} RATE=${RATE:-20} SECONDS=${SECONDS:-20} SIZE=${SIZE:-128}
OUT=${OUT:-bench-results/k6-fanout-$(date +%Y%m%d-%H%M%S).json}
[ -x "$K6" ] || { echo "k6 not found at $K6: make bench-peers builds it" >&2; exit 1; }
dir=$(mktemp -d)
token=bench-k6-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
"$PARLEY" -http "127.0.0.1:$PORT" -data "$dir/data" -node n1 -agent-token "$token" \
	-frame-rate 1000000 -workspace-rate 10000000 -max-conns-per-ip 10000000 -log-level warn >"$dir/node.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
i=0
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
	i=$((i + 1)); [ $i -lt 300 ] || { echo "node not ready" >&2; cat "$dir/node.log" >&2; exit 1; }
	sleep 0.1
done
cpu() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print (f[12] + f[13]) / 100 }' "/proc/$pid/stat"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
mkdir -p "$(dirname "$OUT")"
# The node's CPU from the publisher's start (SETUP s in) to k6's end.
SETUP=${SETUP:-8}
(sleep "$SETUP"; cpu >"$dir/c0") &
sampler=$!
"$K6" run --quiet --summary-export "$OUT" -e URL="ws://127.0.0.1:$PORT/v1/ws" -e TOKEN="$token" \
	-e SUBS="$SUBS" -e RATE="$RATE" -e SECONDS="$SECONDS" -e SIZE="$SIZE" -e SETUP="$SETUP" bench/testdata/k6/fanout.js
c1=$(cpu)
wait "$sampler"
echo "node CPU seconds from the first publish to k6's end: $(echo "$c1 $(cat "$dir/c0")" | awk '{ printf "%.2f", $1 - $2 }'); node RSS at the end: $(rss) KiB"
echo "k6 summary: $OUT"
