#!/usr/bin/env bash
# Runs the README's "A secured cluster" block as it stands (between its secure-cluster markers),
# in a scratch copy of the checkout, and checks each answer: alice's increment is applied, the
# operator's token reads the status, a plaintext client and alice's suspend are refused with exit
# 4 — and the members' logs say why. Needs openssl (Debian's openssl package) and the seed's
# localhost ports 9000-9002, 9100-9102 free. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
for p in 9000 9001 9002 9100 9101 9102; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "port $p is in use: the block needs the seed's ports" >&2; exit 1; fi
done
work=$(mktemp -d)
pgid=""
cleanup() {
  # The block's members run in the process group of its own the block was started in.
  if [ -n "$pgid" ]; then kill -TERM -- "-$pgid" 2>/dev/null || true; sleep 1; kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
# The block runs from a copy of the checkout (it builds ./tandem and writes ./secure there).
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"/
block=$(awk '/<!-- secure-cluster:begin -->/{on=1; next} /<!-- secure-cluster:end -->/{on=0} on' README.md | sed '/^```/d')
[ -n "$block" ] || { echo "README.md has no secure-cluster block" >&2; exit 1; }
cd "$work"
# Each line's exit status is what is checked, so the block runs with -e off, its output kept.
out=$work/out
set +e
setsid bash -c "set -x
$block
echo END" >"$out" 2>&1 &
runner=$!
pgid=$(ps -o pgid= "$runner" | tr -d ' ')
set -e
wait $runner || true
cd "$work/secure"
fail() { echo "FAIL: $*" >&2; echo "--- the block's output:" >&2; cat "$out" >&2; for f in node-*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
grep -q "^END" "$out" || fail "the block did not run to its end"
grep -q "OK: counter=5" "$out" || fail "alice's increment was not applied"
grep -qE "^\+ \.\./tandem cluster status" "$out" || fail "no status line"
# Run the checked lines again to read their exit codes (the cluster is still up).
../tandem cluster status --cacert ca.crt --token-file ops.token >/dev/null || fail "the operator's status failed"
set +e
../tandem client get 2>err1; c1=$?
../tandem cluster suspend --cacert ca.crt --cert alice.crt --key alice.key 2>err2; c2=$?
../tandem client increment --cacert ca.crt --token-file <(echo not-a-token-0123456789) 2>err3; c3=$?
set -e
[ "$c1" = 4 ] && grep -q "speaks TLS" err1 || fail "plaintext client: exit $c1: $(cat err1)"
[ "$c2" = 4 ] && grep -q "permission denied" err2 || fail "alice's suspend: exit $c2: $(cat err2)"
[ "$c3" = 4 ] && grep -q "not known" err3 || fail "a wrong token: exit $c3: $(cat err3)"
sleep 0.5; grep -q "plaintext (not TLS)" node-*.log || fail "no member logged the plaintext client"
if grep -h "bad record MAC" node-*.log; then fail "a member read a corrupt TLS record"; fi
echo "secure-cluster: the README's block ran; TLS, certificates, tokens and roles behave as it says"
