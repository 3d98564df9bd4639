#!/usr/bin/env bash
# make.sh writes data-045a031.tar.gz: the data directories of a three-member cluster of the
# counter service, written by the build at commit 045a031 (the last build before versions on the
# wire and on disk, issue 17). TestDataOf045a031 (node/compat_test.go) opens them under the
# current build.
#
# Usage: node/testdata/045a031/make.sh [path to a tandem binary built at 045a031]
# With no argument it builds one in a temporary git worktree of this repository at 045a031.
# Needs bash, git, go, python3 (to find free ports), GNU tar with --sparse, gzip, fallocate.
#
# What it does:
#   1. Three `tandem node <id> --members <list> --data <dir> --snapshot-entries 16` on free
#      loopback ports (picked by python3, closed, then bound by the nodes: a generator may race
#      another process for a port; then run it again). Each node is a background job in its own
#      process group (set -m); the script stops them by pid.
#   2. The workload, every command through `tandem client` of the same build:
#        tandem client --count 40 --concurrency 1     # 40 increments, one session
#        tandem client increment 5                     # three times: +15
#        tandem client decrement 2                     # twice: -4
#        tandem client increment                       # +1
#      The counter's value is then 40 + 15 - 4 + 1 = 52 (checked with `tandem client get`).
#   3. SIGTERM to the three members (a clean stop), then `tandem archive verify` of that build
#      on each directory: every member must hold a snapshot and log entries after it (the
#      script fails otherwise).
#   4. Packs node-0, node-1, node-2 and members.txt (the member list the data recorded) into
#      data-045a031.tar.gz. Log files are preallocated with zeros (a segment grows in steps of
#      1 MiB; a spare, when the old build made one, is 64 MiB; that build has no flag for a
#      smaller size): the copies are made sparse (fallocate --dig-holes) and packed with
#      tar --sparse, so the tarball holds only the written bytes (4 KiB). Go's archive/tar reads
#      the holes back as zeros.
#
# What the committed tarball holds (its make.sh run printed it; `tandem archive verify` of 045a031):
# on every member, snapshots at indexes 16, 32 and 48 (term 2), one version-1 segment of 1 MiB
# with entries 1..59, hard state term 2 commit 59, no torn tail; no spare. The counter is 52.
# Running make.sh again makes other ports and may end at another index: update the constants
# of compat_test.go (value045a031, snapshot045a031, last045a031) with the tarball.
#
# The old build's member addresses are recorded in the data (each member's conf change carries
# its addresses): members.txt keeps them so the test can say what it expects.
#
# Made on 2026-12-03 with go1.26.8, linux/amd64, from commit 045a031
# ("docs: what is left for performance, with the profile of 2026-12-02").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
expected=52
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n "${oldwt:-}" ]]; then git -C "$here" worktree remove --force "$oldwt" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

bin=${1:-}
if [[ -z "$bin" ]]; then
	oldwt=$work/src
	git -C "$here" worktree add --detach "$oldwt" 045a031 >/dev/null
	(cd "$oldwt" && go build -o "$work/tandem" ./cmd/tandem)
	bin=$work/tandem
fi

# Six free loopback ports, held open together while they are picked so they differ.
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')
members="0,127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}|1,127.0.0.1:${ports[2]},127.0.0.1:${ports[3]}|2,127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}"
endpoints="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"

set -m # each background job in its own process group
for id in 0 1 2; do
	"$bin" node "$id" --members "$members" --data "$work/node-$id" --snapshot-entries 16 \
		>"$work/node-$id.log" 2>&1 &
	pids+=($!)
done
set +m

client() { "$bin" client --endpoints "$endpoints" --timeout 10s "$@"; }

# A leader within 20 s: a get succeeds.
deadline=$((SECONDS + 20))
until client get >/dev/null 2>&1; do
	if ((SECONDS > deadline)); then
		echo "make.sh: no leader within 20 s" >&2
		tail -n 20 "$work"/node-*.log >&2
		exit 1
	fi
done

client --count 40 --concurrency 1
for _ in 1 2 3; do client increment 5; done
for _ in 1 2; do client decrement 2; done
client increment
got=$(client get)
echo "$got"
if ! grep -Eq "(^|[^0-9])$expected([^0-9]|$)" <<<"$got"; then
	echo "make.sh: the counter is not $expected" >&2
	exit 1
fi

# A clean stop: SIGTERM, then wait for each member to exit.
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do
	if ! wait "$p"; then
		echo "make.sh: member (pid $p) exited with an error" >&2
		tail -n 20 "$work"/node-*.log >&2
		exit 1
	fi
done
pids=()

# Every member holds a snapshot and log entries after it.
for id in 0 1 2; do
	report=$("$bin" archive verify "$work/node-$id")
	echo "node-$id:"
	sed 's/^/  /' <<<"$report"
	snap=$(grep -Eo 'snapshot [^:]*: index [0-9]+' <<<"$report" | grep -Eo '[0-9]+$' | sort -n | tail -n 1 || true)
	last=$(grep -Eio 'last index[ :]+[0-9]+|entries [0-9]+\.\.[0-9]+' <<<"$report" | grep -Eo '[0-9]+$' | tail -n 1 || true)
	if [[ -z "$snap" || -z "$last" || "$last" -le "$snap" ]]; then
		echo "make.sh: node-$id: want a snapshot and log entries after it (snapshot ${snap:-none}, last index ${last:-unknown})" >&2
		exit 1
	fi
done

# Pack: sparse copies, so the preallocated zeros cost nothing.
pack=$work/pack
mkdir -p "$pack"
for id in 0 1 2; do
	cp -r --sparse=always "$work/node-$id" "$pack/node-$id"
	find "$pack/node-$id" -type f -exec fallocate --dig-holes {} \;
done
echo "$members" >"$pack/members.txt"
tar --sparse --format=posix --sort=name --owner=0 --group=0 --numeric-owner \
	--mtime=2026-12-03T00:00:00Z -C "$pack" -cf - members.txt node-0 node-1 node-2 |
	gzip -9 -n >"$here/data-045a031.tar.gz"
ls -l "$here/data-045a031.tar.gz"
