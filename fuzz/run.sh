#!/usr/bin/env bash
# Run each fuzz target for SECONDS (default 60); fails on any crash.
# Needs atheris: pip install -e ".[fuzz]"
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-60}"
PYTHON="${PYTHON:-python}"
for target in replies connection; do
    mkdir -p "corpus/$target"
    echo "== fuzz_$target for ${SECONDS_PER_TARGET}s"
    "$PYTHON" "fuzz_$target.py" "corpus/$target" "seeds/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -print_final_stats=1
done
