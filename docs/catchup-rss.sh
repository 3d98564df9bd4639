#!/usr/bin/env bash
# The leader's memory while a follower catches up: three `tandem node` processes on loopback
# (fsync on), a follower stopped, MB megabytes of 4 KiB commands written (the padding is logged
# and replicated like any command), the follower started again. The leader's RSS (VmRSS) is
# sampled every 100 ms: its peak while the commands are written, its value just before the
# follower starts again, and its peak during the catch-up, which ends when the follower's log
# directory has not grown for 2 s.
#
#   docs/catchup-rss.sh [MB] [TANDEM_BINARY]      # default: 100 MB, a build of this tree
#
# Alternate builds to compare them (the machine's load moves the figures):
#   git stash; go build -o /tmp/tandem-old ./cmd/tandem; git stash pop; go build -o /tmp/tandem-new ./cmd/tandem
#   for b in old new old new; do docs/catchup-rss.sh 100 /tmp/tandem-$b; done
set -euo pipefail
mb=${1:-100}; bin=${2:-}
cd "$(dirname "$0")/.."
if [ -z "$bin" ]; then go build -o /tmp/tandem-catchup ./cmd/tandem; bin=/tmp/tandem-catchup; fi
dir=$(mktemp -d)
pid=()
cleanup() { for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
members="0,127.0.0.1:$base,127.0.0.1:$((base + 1))|1,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))|2,127.0.0.1:$((base + 4)),127.0.0.1:$((base + 5))"
eps="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
start() { "$bin" node "$1" --members "$members" --data "$dir/node-$1" >>"$dir/node-$1.out" 2>&1 & pid[$1]=$!; }
rss() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }   # MiB
hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
logbytes() { du -sb "$dir/node-$1/log" | cut -f1; }

for i in 0 1 2; do start "$i"; done
leader=""
for _ in $(seq 300); do
  for i in 0 1 2; do
    role=$(grep -a "ROLE CHANGE" "$dir/node-$i.out" 2>/dev/null | tail -1 || true)
    [[ $role == *LEADER* ]] && leader=$i
  done
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "no leader within 30 s" >&2; tail -n 5 "$dir"/node-*.out >&2; exit 1; }
for i in 0 1 2; do   # a member that could not bind its ports (another program took one) has exited
  kill -0 "${pid[$i]}" 2>/dev/null || { echo "member $i is not running:" >&2; cat "$dir/node-$i.out" >&2; exit 1; }
done
lp=${pid[$leader]}
f=$(((leader + 1) % 3))
"$bin" client --endpoints "$eps" --count 1000 --concurrency 16 --payload 4096 >/dev/null   # warm-up
echo "leader: member $leader (RSS $(rss "$lp") MiB after warm-up); follower member $f stopped"
kill -TERM "${pid[$f]}"; wait "${pid[$f]}" 2>/dev/null || true

n=$((mb * 1024 * 1024 / 4096))
peak_write=0
"$bin" client --endpoints "$eps" --count "$n" --concurrency 64 --payload 4096 --timeout ${TIMEOUT:-10m} &
cl=$!
while kill -0 "$cl" 2>/dev/null; do
  r=$(rss "$lp"); [ "$r" -gt "$peak_write" ] && peak_write=$r
  sleep 0.1
done
wait "$cl"
sleep 2
before=$(rss "$lp")
echo "written: $n commands of 4 KiB; leader RSS peak while writing $peak_write MiB, before the catch-up $before MiB"

echo 5 >"/proc/$lp/clear_refs" 2>/dev/null || true   # resets VmHWM (Linux ≥ 4.0)
t0=$(date +%s.%N)
start "$f"
peak=$before; last=-1; still=0
while [ "$still" -lt 20 ]; do
  r=$(rss "$lp"); [ "$r" -gt "$peak" ] && peak=$r
  b=$(logbytes "$f" 2>/dev/null || echo 0)
  if [ "$b" = "$last" ]; then still=$((still + 1)); else still=0; last=$b; fi
  sleep 0.1
done
t1=$(date +%s.%N)
printf 'catch-up: %.1f s (follower log %d MB, leader log %d MB); leader RSS peak %d MiB (+%d MiB), VmHWM %d MiB\n' \
  "$(echo "$t1 - $t0 - 2" | bc)" "$(($(logbytes "$f") / 1000000))" "$(($(logbytes "$leader") / 1000000))" \
  "$peak" "$((peak - before))" "$(hwm "$lp")"
