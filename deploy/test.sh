#!/usr/bin/env bash
# deploy/test.sh: builds the static binary and the FROM-scratch image, brings up deploy/compose.yaml
# (three members) under a project name of its own, drives `tandem client` from the host, and
# checks the counter against every acknowledged increment after each fault:
#
#   1. steady state: single increments and a burst of --count increments
#   2. the leader's container is killed (docker kill): clients keep working; it comes back
#   3. the leader is cut off the network (docker network disconnect), then healed (connect)
#      (in 2 and 3 a second client sends increments in the background, so the fault meets
#      commands in flight)
#   4. every member restarts (docker-compose restart)
#   5. the cluster is removed and created again on its volumes (down without -v, then up)
#
# An increment the client acknowledged (exit 0) must be in the counter; one whose outcome is
# unknown (exit 3) may or may not be; any other failure fails the test (clients must keep
# working through each fault). The counter must lie between the acknowledged increments and
# those plus the unknown ones; it prints both at every check. Exits non-zero on any mismatch.
# It removes its containers, network, volumes, image and temporary files on the way out (on a
# failure with TANDEM_DEPLOY_KEEP=1 in the environment, it leaves them for inspection).
#
# Needs a Docker engine that answers `docker info`, docker-compose (v1 or `docker compose`) and
# Go; pulls nothing. The client ports are published on 127.0.0.1:19930-19932 (TANDEM_PORT0..2
# override them) so as not to meet a cluster started from compose.yaml's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

if docker-compose version >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  echo "deploy/test.sh: neither docker-compose nor docker compose is available" >&2
  exit 1
fi

project="tandemdeploy$$"
work=$(mktemp -d)
export TANDEM_IMAGE="tandem-deploy-test:$project"
export TANDEM_PORT0=${TANDEM_PORT0:-19930} TANDEM_PORT1=${TANDEM_PORT1:-19931} TANDEM_PORT2=${TANDEM_PORT2:-19932}
endpoints="127.0.0.1:$TANDEM_PORT0,127.0.0.1:$TANDEM_PORT1,127.0.0.1:$TANDEM_PORT2"
compose() { "${compose_cmd[@]}" -p "$project" -f deploy/compose.yaml "$@"; }
tandem() { "$work/tandem" "$@"; }

writer=
cleanup() {
  local rc=$?
  if [ -n "$writer" ]; then kill "$writer" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    echo "---- the members' last log lines (exit $rc)"
    compose logs --no-color --tail 30 2>&1 || true
  fi
  if [ "$rc" -ne 0 ] && [ -n "${TANDEM_DEPLOY_KEEP:-}" ]; then
    echo "deploy/test.sh: TANDEM_DEPLOY_KEEP is set: project $project, image $TANDEM_IMAGE and $work are left for inspection"
    return
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi "$TANDEM_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  echo "deploy/test.sh: cleaned up project $project (exit $rc, $((SECONDS - t0)) s)"
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM

acked=0   # increments the client acknowledged: each is in the counter
unknown=0 # increments whose outcome the client could not know (exit 3)

# increments N LABEL: N increments, one `tandem client` process each.
increments() {
  local n=$1 label=$2 i rc start=$SECONDS ok=0
  for ((i = 0; i < n; i++)); do
    rc=0
    tandem client increment --endpoints "$endpoints" --timeout 20s >/dev/null || rc=$?
    case $rc in
      0) acked=$((acked + 1)); ok=$((ok + 1)) ;;
      3) unknown=$((unknown + 1)); say "  increment $i: outcome unknown (exit 3)" ;;
      *) fail "$label: increment $i failed (exit $rc): clients did not keep working" ;;
    esac
  done
  say "$label: $ok of $n increments acknowledged in $((SECONDS - start)) s"
}

# writer_start: a second client increments one at a time in the background, so that a fault
# meets commands in flight; writer_stop waits for it and adds up what it was told.
writer_start() {
  rm -f "$work/writer" "$work/writer.stop"
  (
    a=0 u=0 x=0
    while [ ! -e "$work/writer.stop" ]; do
      rc=0
      tandem client increment --endpoints "$endpoints" --timeout 20s >/dev/null 2>>"$work/writer.err" || rc=$?
      case $rc in
        0) a=$((a + 1)) ;;
        3) u=$((u + 1)) ;;
        *) x=$((x + 1)) ;;
      esac
    done
    echo "$a $u $x" >"$work/writer"
  ) &
  writer=$!
}
writer_stop() {
  local label=$1 a u x
  touch "$work/writer.stop"
  wait "$writer"
  writer=
  read -r a u x <"$work/writer"
  say "$label: the background client: $a acknowledged, $u unknown, $x failed"
  acked=$((acked + a))
  unknown=$((unknown + u))
  if [ "$x" -ne 0 ]; then
    cat "$work/writer.err" >&2
    fail "$label: the background client's increments failed: clients did not keep working"
  fi
}

# burst N: N increments from one client, 16 at once (tandem client --count); all must succeed.
burst() {
  local n=$1 out
  out=$(tandem client --count "$n" --concurrency 16 --endpoints "$endpoints" --timeout 60s) || fail "burst: exit $?: $out"
  echo "$out" | sed 's/^/    /'
  grep -q ", 0 errors" <<<"$out" || fail "burst: some increments failed: $out"
  acked=$((acked + n))
}

# check LABEL: the counter (a linearizable get) against the increments sent so far.
check() {
  local label=$1 out value
  out=$(tandem client get --endpoints "$endpoints" --timeout 20s) || fail "$label: get failed: $out"
  value=${out#VALUE: }
  [[ $value =~ ^[0-9]+$ ]] || fail "$label: unexpected reply to get: $out"
  if [ "$value" -lt "$acked" ] || [ "$value" -gt $((acked + unknown)) ]; then
    fail "$label: counter is $value, acknowledged increments $acked, unknown $unknown: MISMATCH"
  fi
  say "CHECK $label: counter=$value acknowledged=$acked unknown=$unknown: ok"
}

# wait_leader: waits (60 s at most) for the endpoints that answer to agree on a leader; prints its id.
wait_leader() {
  local deadline=$((SECONDS + 60)) id
  while [ $SECONDS -lt $deadline ]; do
    if id=$(tandem cluster leader --endpoints "$endpoints" --timeout 3s 2>/dev/null) && [[ $id =~ ^[0-9]+$ ]]; then
      echo "$id"
      return 0
    fi
    sleep 0.5
  done
  fail "no leader within 60 s"
}

# wait_converged LABEL: waits (60 s at most) until all three endpoints answer, agree on the
# leader, and have applied the same log index.
wait_converged() {
  local label=$1 deadline=$((SECONDS + 60)) start=$SECONDS out applied
  while [ $SECONDS -lt $deadline ]; do
    if out=$(tandem cluster status --endpoints "$endpoints" --timeout 3s 2>/dev/null); then
      applied=$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ && NF >= 7 { print $7 }' <<<"$out" | sort -u)
      if [ "$(wc -l <<<"$applied")" -eq 1 ] && grep -q "^3 of 3 endpoints answered" <<<"$out"; then
        say "$label: all three members answer and have applied index $applied ($((SECONDS - start)) s)"
        return 0
      fi
    fi
    sleep 0.5
  done
  echo "$out"
  fail "$label: the members did not converge within 60 s"
}

container() { compose ps -q "tandem$1"; }

say "building the static binary"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/ctx/tandem" ./cmd/tandem
mkdir "$work/ctx/data"
cp deploy/Dockerfile "$work/ctx/"
cp "$work/ctx/tandem" "$work/tandem"
say "building image $TANDEM_IMAGE (FROM scratch)"
# The classic builder: it needs nothing pulled for FROM scratch, and no buildx plugin.
DOCKER_BUILDKIT=0 docker build -q -t "$TANDEM_IMAGE" "$work/ctx" >/dev/null
say "image size: $(docker image inspect -f '{{.Size}}' "$TANDEM_IMAGE") bytes"

say "== 1. up: project $project, clients on $endpoints"
compose up -d 2>&1 | sed 's/^/    /'
leader=$(wait_leader)
say "leader: member $leader"
increments 20 "steady state"
check "steady state"
burst 300
check "after the burst"

say "== 2. kill the leader's container (member $leader)"
killed=$leader
writer_start
sleep 1
docker kill "$(container "$killed")" >/dev/null
increments 20 "leader killed"
writer_stop "leader killed"
leader=$(wait_leader)
say "new leader: member $leader"
check "leader killed"
state=$(docker inspect -f '{{.State.Status}}' "$(container "$killed")")
say "member $killed's container after docker kill: $state (restart: unless-stopped)"
if [ "$state" != running ]; then
  say "starting member $killed again (docker start)"
  docker start "$(container "$killed")" >/dev/null
fi
wait_converged "member $killed back"
check "member $killed back"

say "== 3. cut the leader (member $leader) off the network"
cut=$leader
cid=$(container "$cut")
net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$cid")
writer_start
sleep 1
docker network disconnect "$net" "$cid"
increments 20 "member $cut cut off"
writer_stop "member $cut cut off"
leader=$(wait_leader)
say "leader while member $cut is cut off: member $leader"
[ "$leader" != "$cut" ] || fail "member $cut, cut off, is still the leader"
check "member $cut cut off"
say "healing: docker network connect --alias tandem$cut $net (member $cut)"
# --alias: a plain connect does not give back the service name compose gave the container, and
# the other members find it by that name (without it they cannot dial it once its connections
# to them drop, at the next restart at the latest).
docker network connect --alias "tandem$cut" "$net" "$cid"
wait_converged "member $cut healed"
increments 10 "healed"
check "healed"

say "== 4. restart every member (docker-compose restart)"
compose restart 2>&1 | sed 's/^/    /'
leader=$(wait_leader)
say "leader after the restart: member $leader"
check "after the restart"
increments 10 "after the restart"
wait_converged "after the restart"
check "after the restart, converged"

say "== 5. down (volumes kept) and up again"
compose down 2>&1 | sed 's/^/    /'
compose up -d 2>&1 | sed 's/^/    /'
leader=$(wait_leader)
say "leader on the kept volumes: member $leader"
check "recreated on the kept volumes"
wait_converged "recreated"

say "PASS: $acked acknowledged increments, $unknown unknown, counter checked after each fault ($((SECONDS - t0)) s)"
