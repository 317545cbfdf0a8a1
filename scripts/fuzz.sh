#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) from the committed corpus: every target for
# SECONDS (default 60) as CI does, or one named target. A crash leaves its input in fuzz/artifacts/TARGET/;
# fix the code and keep the input as a regression test.
#   scripts/fuzz.sh [TARGET] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(spec condition literal envelope embedded_log)
if [ $# -ge 1 ] && [ "$1" != "all" ]; then targets=("$1"); fi
seconds="${2:-${ALOFT_FUZZ_SECONDS:-60}}"
command -v cargo-fuzz >/dev/null || { echo "[fuzz] installing cargo-fuzz (once, about 2 minutes)" >&2; cargo install cargo-fuzz --locked --quiet; }
# The fuzz build instruments every crate: its own target dir outside the clone, reused between runs.
export CARGO_TARGET_DIR="${ALOFT_FUZZ_TARGET_DIR:-$HOME/.cache/aloft/fuzz-target}"
# The machine's one toolchain is stable: cargo-fuzz's sanitizer flags need RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  echo "[fuzz] $target for ${seconds}s" >&2
  # A copy of the corpus: what a run finds stays out of the repo unless kept on purpose.
  work="$(mktemp -d)"
  cp -r "fuzz/corpus/$target/." "$work/"
  log="$(mktemp)"
  status=0
  (cd fuzz && cargo fuzz run --sanitizer none --debug-assertions "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -print_final_stats=1) >"$log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|panicked|SUMMARY" "$log" | sed "s/^/[fuzz] $target: /" >&2 || true
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "[fuzz] $target failed (exit $status); a crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  rm -f "$log"
done
