#!/usr/bin/env bash
# Fuzz each atheris target for FUZZ_SECONDS seconds (default 60; or the first argument)
# on a temporary copy of fuzz/corpus/<target>: the repository is never modified.
# Fails on any crash, printing the reproducer (kept under FUZZ_ARTIFACTS, default a
# temporary directory); add it to fuzz/corpus/<target>/ and tests/test_fuzz_regressions.py
# runs it from then on. Needs atheris: pip install -e ".[fuzz]".
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-${1:-60}}"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/smtp-sansio-fuzz.XXXXXX")"
ARTIFACTS="${FUZZ_ARTIFACTS:-$WORK/artifacts}"
mkdir -p "$ARTIFACTS"
status=0
for target in replies connection headers; do
    cp -r "corpus/$target" "$WORK/$target"
    seeds=$(find "corpus/$target" -type f | wc -l)
    echo "== fuzz_$target: ${SECONDS_PER_TARGET}s from $seeds corpus inputs"
    log="$WORK/$target.log"
    if "$PYTHON" "fuzz_$target.py" "$WORK/$target" -dict=smtp.dict \
            -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10 \
            -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$target-" >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$log" || true
        echo "   corpus after the run: $(find "$WORK/$target" -type f | wc -l) inputs (not kept)"
    else
        status=1
        tail -n 60 "$log"
        for reproducer in "$ARTIFACTS/$target-"*; do
            [ -e "$reproducer" ] || continue
            echo "reproducer $reproducer:"
            "$PYTHON" -c 'import sys; print(repr(open(sys.argv[1], "rb").read()))' "$reproducer"
        done
        echo "fuzz_$target FAILED"
    fi
    rm -rf "${WORK:?}/$target"
done
if [ "$status" = 0 ] && [ -z "${FUZZ_ARTIFACTS:-}" ]; then rm -rf "$WORK"; fi
exit "$status"
