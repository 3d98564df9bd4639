#!/usr/bin/env bash
# Tandem and etcd side by side, in the same run, on this machine: three members each on
# loopback, fsync on for both (etcd always syncs its WAL), the same clients x in-flight.
#
#   apt-get install etcd-server etcd-client   # Debian's etcd 3.4 (etcdctl for the health check)
#   docs/bench-vs-etcd.sh [CLIENTS] [INFLIGHT] [DURATION]
#
# etcd is driven twice: through its gRPC client (tools/etcdload, a module of its own, as etcd's
# own benchmark does: CLIENTS connections with INFLIGHT requests each) and through its JSON
# gateway by tandem bench --etcd (one HTTP connection per request in flight, no client library).
set -euo pipefail
clients=${1:-4}; inflight=${2:-256}; duration=${3:-10s}
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
cd "$(dirname "$0")/.."
go build -o /tmp/tandem-bench ./cmd/tandem
(cd tools/etcdload && go build -o /tmp/etcdload .)
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cluster="e0=http://127.0.0.1:23800,e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802"
for i in 0 1 2; do
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$dir/e$i.log" 2>&1 &
  pids+=($!)
done
eps=127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== etcd $(etcd --version | head -1 | awk '{print $3}'), gRPC, blind Put, $clients x $inflight"
/tmp/etcdload --endpoints "$eps" --clients "$clients" --inflight "$inflight" --duration "$duration" --workload put
echo "== etcd, gRPC, linearizable Get"
/tmp/etcdload --endpoints "$eps" --clients "$clients" --inflight "$inflight" --duration "$duration" --workload get
echo "== etcd, JSON gateway, blind Put, $clients x $inflight"
/tmp/tandem-bench bench --etcd "$eps" --clients "$clients" --inflight "$inflight" --duration "$duration" 2>/dev/null
echo "== etcd, JSON gateway, linearizable Get"
/tmp/tandem-bench bench --etcd "$eps" --workload query --clients "$clients" --inflight "$inflight" --duration "$duration" 2>/dev/null
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
echo "== Tandem increments (processes), $clients x $inflight"
/tmp/tandem-bench bench --processes --clients "$clients" --inflight "$inflight" --duration "$duration" 2>/dev/null
echo "== Tandem queries (processes)"
/tmp/tandem-bench bench --processes --workload query --clients "$clients" --inflight "$inflight" --duration "$duration" 2>/dev/null
