#!/usr/bin/env bash
# Runs each fuzz target built by build.sh for SECONDS on its committed seed corpus, with a fixed
# libFuzzer seed (FUZZ_SEED, default 1) so that a CI run explores what a local run explored;
# (tools/fuzz/corpus/<target>/, never written to: new inputs go to .build-fuzz/work/<target>/).
# Usage: tools/fuzz/run.sh SECONDS [TARGET...]   (default: every target)
# Exits non-zero if any target crashes, traps, leaks, hits an ASan report or the RSS limit;
# the input that did it is left as .build-fuzz/artifacts/<target>-crash-* (or leak-*, oom-*).
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:?usage: tools/fuzz/run.sh SECONDS [TARGET...]}
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors model-config sentencepiece chat pth detokenizer)
OUT=${FUZZ_OUT:-.build-fuzz}   # FUZZ_OUT: build elsewhere while a run uses .build-fuzz
mkdir -p "$OUT/artifacts" "$OUT/logs"
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/work/$t"
    echo "== fuzz $t for ${SECONDS_EACH}s"
    ASAN_OPTIONS=detect_leaks=1 "$OUT/$t" "$OUT/work/$t" "tools/fuzz/corpus/$t" \
        -seed="${FUZZ_SEED:-1}" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -detect_leaks=1 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" >"$OUT/logs/$t.log" 2>&1
    rc=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$OUT/logs/$t.log"
    if [ $rc -ne 0 ]; then
        echo "FAIL: $t exited $rc; log $OUT/logs/$t.log, input in $OUT/artifacts/"
        grep -E 'ERROR|SUMMARY|Fatal error|artifact' "$OUT/logs/$t.log" | head -20
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then echo "fuzz failures: ${failed[*]}"; exit 1; fi
echo "fuzz: no crashes, leaks or ASan reports"
