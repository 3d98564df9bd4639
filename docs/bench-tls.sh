#!/usr/bin/env bash
# What TLS costs (issue 22: with TLS on both ports, at least 80 % of plaintext throughput).
# Alternating runs of tandem bench --processes, plaintext and --tls (mutual TLS 1.3 between the
# members, TLS and client certificates on the client port, certificates made for the run). One
# JSON line per run, then the mean of each and their ratio.
#
#   docs/bench-tls.sh [RUNS] [DURATION]
set -euo pipefail
runs=${1:-3}; duration=${2:-6s}
cd "$(dirname "$0")/.."
go build -o /tmp/tandem-bench-tls ./cmd/tandem
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$runs"); do
  for mode in plain tls; do
    flag=""; [ "$mode" = tls ] && flag=--tls
    res=$(/tmp/tandem-bench-tls bench --processes --duration "$duration" $flag --json)
    echo "{\"run\":$r,\"mode\":\"$mode\",\"bench\":$res}" | tee -a "$out"
  done
done
awk -F'"ops_per_sec":' '/"mode":"plain"/{split($2,a,","); p+=a[1]; np++} /"mode":"tls"/{split($2,a,","); t+=a[1]; nt++}
  END {printf "plaintext %.0f ops/s, TLS %.0f ops/s (mean of %d each): TLS at %.1f %%\n", p/np, t/nt, np, 100*(t/nt)/(p/np)}' "$out"
