#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 15) and prints how many
# inputs each one tried. Fails on the first crash, hang or memory blow-up, leaving the
# input that caused it in fuzz/artifacts/TARGET/ (replay: cargo fuzz run TARGET FILE).
#
# cargo-fuzz wants a nightly compiler for its sanitizer flags; RUSTC_BOOTSTRAP=1 lets
# the stable one accept them. cargo-fuzz itself is installed when missing.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sanitize template name_date metadata)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..." >&2
  cargo install cargo-fuzz --locked >/dev/null
fi
export RUSTC_BOOTSTRAP=1

# Real camera files (and the broken ones) seed the metadata reader, when present.
fixtures=../shared/fixtures/media

# -a: debug assertions, so that an overflow is a crash here rather than a wrong name.
# -s none: the fuzzed code is safe Rust, where AddressSanitizer finds nothing a panic
# would not; without it runs are ~50 times faster, and memory is counted as in
# production (the metadata reader may reserve address space it never touches, which
# AddressSanitizer's shadow memory turns into real memory).
flags=(-a -s none)
build_log=$(mktemp)
if ! cargo fuzz build "${flags[@]}" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
rm -f "$build_log"
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus"
  extra=()
  # Inputs that once failed stay in the run, so that the bug cannot come back.
  [ -d "fuzz/seeds/$t" ] && extra+=("fuzz/seeds/$t")
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [ "$t" = metadata ]; then
    [ -d "$fixtures" ] && extra+=("$fixtures")
    args+=(-max_len=262144)
  fi
  log=$(mktemp)
  if ! cargo fuzz run "${flags[@]}" "$t" "$corpus" "${extra[@]}" -- "${args[@]}" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (input kept in fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  corpus_size=$(find "$corpus" -type f | wc -l)
  echo "fuzz: $t: ${runs:-?} inputs in ${seconds} s, corpus ${corpus_size} files, no crash"
  rm -f "$log"
done
