#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for FUZZ_SECONDS (default 60) on one
# core each, one after the other; merges what it found into the committed
# corpus of each (fuzz/corpus/<target>/, minimised with `cargo fuzz cmin`
# so that it stays small), copies every crash into fuzz/regressions/<target>/,
# and prints a summary. `cargo test --test fuzz_replay` replays both on
# stable Rust. Give target names as arguments to run only those.
#
# cargo-fuzz needs nightly Rust's flags (sanitizers, -Z options); this
# machine has a stable toolchain only, so RUSTC_BOOTSTRAP=1 lets stable
# accept them.
set -uo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=($(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^wsbind-fuzz$'))
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
cargo fuzz build -O || exit 1

summary=()
crashes=0
for target in "${targets[@]}"; do
    work=target/work/$target
    rm -rf "$work" "artifacts/$target"
    mkdir -p "$work" "corpus/$target" "artifacts/$target" "regressions/$target"
    before=$(ls "corpus/$target" | wc -l)
    cp corpus/"$target"/* "$work"/ 2>/dev/null
    echo "== $target: $seconds s from $before inputs"
    # Every input the committed corpus and the regressions hold first, then
    # new ones; inputs up to 4 KiB keep the corpus light.
    cargo fuzz run -O "$target" "$work" "regressions/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" 2>&1 | tee "target/work/$target.log" |
        grep -E '^(#[0-9]+.*(INITED|DONE)|Done|SUMMARY|.*panicked at)' 
    # Keep only inputs that reach an edge no other reaches (not counting
    # how often: that keeps a few hundred at most), in place of the
    # committed corpus.
    cargo fuzz cmin -O "$target" "$work" -- -use_counters=0 >"target/work/$target.cmin.log" 2>&1
    rm -f corpus/"$target"/*
    cp "$work"/* "corpus/$target"/ 2>/dev/null
    after=$(ls "corpus/$target" | wc -l)
    found=0
    for crash in artifacts/"$target"/*; do
        [ -e "$crash" ] || continue
        cp "$crash" "regressions/$target/"
        found=$((found + 1))
    done
    crashes=$((crashes + found))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "target/work/$target.log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "target/work/$target.log" | tail -1)
    summary+=("$(printf '%-14s %10s execs  %-10s corpus %4d -> %4d  crashes %d' \
        "$target" "${execs:-?}" "${cov:-cov: ?}" "$before" "$after" "$found")")
done

echo
echo "fuzzed ${#targets[@]} targets for $seconds s each:"
printf '  %s\n' "${summary[@]}"
if [ "$crashes" -gt 0 ]; then
    echo "crashes were copied to fuzz/regressions/: fix them, then cargo test --test fuzz_replay"
    exit 1
fi
