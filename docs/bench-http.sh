#!/usr/bin/env bash
# What the members' HTTP endpoint costs (issue 21: at most 3 % of throughput). Alternating runs of
# tandem bench --processes: "scraped", each member serving it at its default 127.0.0.1:9200+id and
# scraped every second (/metrics, /readyz and /livez of all three) by a loop of curl; "off", the
# endpoint disabled (TANDEM_HTTP_ADDR set and empty); "idle", served and not scraped. One JSON
# line per run.
#
#   docs/bench-http.sh [RUNS] [DURATION]
set -euo pipefail
runs=${1:-3}; duration=${2:-6s}
cd "$(dirname "$0")/.."
go build -o /tmp/tandem-bench ./cmd/tandem
for p in 9200 9201 9202; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "port $p is taken: the on runs would have no endpoint" >&2; exit 1; fi
done
scraper=""
cleanup() { [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true; }
trap cleanup EXIT
urls=()
for i in 0 1 2; do for path in metrics readyz livez; do urls+=("http://127.0.0.1:920$i/$path"); done; done
for r in $(seq "$runs"); do
  for mode in scraped off idle; do
    log=$(mktemp); echo 0 >"$log"
    case $mode in
    scraped)
      # One curl a second fetches all nine URLs (a process per URL would cost the machine more
      # than the endpoint does); the count of answers says the endpoint was there.
      (ok=0; while sleep 1; do
        ok=$((ok + $(curl -s -m 1 -o /dev/null -w '%{http_code}\n' "${urls[@]}" | grep -c '^200$' || true)))
        echo $ok >"$log"
      done) &
      scraper=$!
      out=$(/tmp/tandem-bench bench --processes --duration "$duration" --json)
      kill "$scraper"; wait "$scraper" 2>/dev/null || true; scraper="" ;;
    idle) out=$(/tmp/tandem-bench bench --processes --duration "$duration" --json) ;;
    off) out=$(TANDEM_HTTP_ADDR= /tmp/tandem-bench bench --processes --duration "$duration" --json) ;;
    esac
    echo "{\"run\":$r,\"http\":\"$mode\",\"scrapes_answered\":$(cat "$log"),\"bench\":$out}"
    rm -f "$log"
  done
done
