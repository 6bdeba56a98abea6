#!/usr/bin/env bash
# Benchmarks, side by side in one run; results in BENCHMARKS.md.
# Usage: scripts/bench.sh [--rounds N] [--only first|noop] [--photos N ...]
# Needs rsync and rclone (Debian: apt-get install rsync rclone).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench.py "$@"
