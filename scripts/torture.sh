#!/usr/bin/env bash
# The torture tests of tests/torture.rs with many rounds, then longer fuzzing of every
# fuzz target, then a summary of the counts.
#
#   kill -9 at pseudo-random instants (folder, virtual Android, virtual iPhone), unplugs
#   at pseudo-random byte offsets, a destination that fills up, turns read-only or
#   disappears mid-run (these need root: plain `cargo test` ignores them, this runs them
#   and says SKIPPED when not root), hostile names, sizes and dates, hostile media;
#   then tests/safety_store.rs (symbolic links inside the store, files swapped between
#   listing and reading) as many rounds.
#
# Usage: scripts/torture.sh [ROUNDS] [FUZZ_SECONDS_PER_TARGET]
#   ROUNDS (default 50): OFFLOAD_TORTURE_ITERATIONS; the mounted-filesystem tests run a
#   quarter as many. The seed is OFFLOAD_TORTURE_SEED, else random; it is printed, and
#   the same seed replays the same instants and offsets.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-50}
fuzz_seconds=${2:-300}
seed=${OFFLOAD_TORTURE_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
report=$(mktemp)

echo "torture: $rounds rounds, seed $seed, fuzzing ${fuzz_seconds} s per target"
started=$(date +%s)
test_log=$(mktemp)
trap 'rm -f "$report" "$test_log"' EXIT
set +e
OFFLOAD_TORTURE_ITERATIONS=$rounds OFFLOAD_TORTURE_SEED=$seed OFFLOAD_TORTURE_REPORT=$report \
  cargo test --test torture -- --include-ignored --nocapture 2>&1 | tee "$test_log" |
  grep --line-buffered -E '^(torture:|test |test result)|SKIPPED'
status=${PIPESTATUS[0]}
# Symbolic links inside the store and files swapped after listing, as many rounds.
OFFLOAD_TORTURE_ITERATIONS=$rounds cargo test --test safety_store 2>&1 | tee -a "$test_log" |
  grep --line-buffered -E '^(test |test result)|SKIPPED'
if [ "${PIPESTATUS[0]}" != 0 ]; then
  status=1
fi
set -e
tests_done=$(date +%s)
if [ "$status" != 0 ]; then
  # The failures, with their messages.
  sed -n '/^failures:$/,$p' "$test_log" >&2
fi

fuzz_log=$(mktemp)
if ! scripts/fuzz.sh "$fuzz_seconds" | tee "$fuzz_log"; then
  status=1
fi
done_at=$(date +%s)

echo
echo "== Torture summary (seed $seed, $rounds rounds)"
sort "$report"
echo "tests: $((tests_done - started)) s"
cat "$fuzz_log"
echo "fuzzing: $((done_at - tests_done)) s"
rm -f "$fuzz_log"
exit $status
