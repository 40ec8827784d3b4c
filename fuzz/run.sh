#!/usr/bin/env bash
# Runs every fuzz target for a fixed time: bash fuzz/run.sh [SECONDS per target, default 300]
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). cargo fuzz passes nightly flags
# (-Zsanitizer=address); RUSTC_BOOTSTRAP lets the one stable toolchain accept them.
# A crash stops its target and leaves the input in fuzz/artifacts/<target>/; the script
# exits non-zero. Fixed inputs go to fixtures/fuzz/<target>/ (tests/fuzz_regressions.rs).
set -euo pipefail
seconds="${1:-300}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
python3 seed.py
cargo fuzz build
failed=0
for target in mime engine session mailbox dav; do
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 -timeout=10 \
        -print_final_stats=1 2>&1 | tee "/tmp/imipd-fuzz-$target.log" | grep -E "^(#[0-9]+.*(DONE|pulse)|==|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb|Done)|panicked" ; then
        :
    fi
    if grep -qE "^(==[0-9]+==ERROR|SUMMARY: |thread .* panicked)" "/tmp/imipd-fuzz-$target.log"; then
        echo "== $target: FAILED (see /tmp/imipd-fuzz-$target.log and fuzz/artifacts/$target/)"
        failed=1
    elif ! grep -q "stat::number_of_executed_units" "/tmp/imipd-fuzz-$target.log"; then
        echo "== $target: FAILED to run (see /tmp/imipd-fuzz-$target.log)"
        failed=1
    else
        echo "== $target: no crash in ${seconds}s"
    fi
done
exit "$failed"
