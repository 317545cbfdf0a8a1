#!/usr/bin/env bash
# Writes tests/golden/log (the embedded event log of a fixed workload and the read models admin answered for
# it). Run it only when a release changes what the log holds on purpose; every later build must replay the
# committed log to the same read models (tests/tests/golden_log.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p aloft-e2e --test golden_log -- --ignored writes_the_golden_log --nocapture
