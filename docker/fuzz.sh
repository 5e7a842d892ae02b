#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets) for a given time each; installs cargo-fuzz and a
# nightly toolchain when missing. A crash leaves its input in fuzz/artifacts/<target>/: turn it
# into a regression test next to the code it broke.
#
# Usage: docker/fuzz.sh [seconds per target, default 60] [target...]   (targets: decode replay_csv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode replay_csv)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# Seeds: real records (the contract's examples) and real replay rows.
seed() {
    mkdir -p fuzz/corpus/decode fuzz/corpus/replay_csv
    if [ -z "$(ls -A fuzz/corpus/decode)" ]; then
        python3 - <<'PY'
import re
text = open("docs/events.md").read()
for i, block in enumerate(re.findall(r"```json\n(.*?)```", text, re.S)):
    open(f"fuzz/corpus/decode/example{i}.json", "w").write(block)
PY
    fi
    if [ -z "$(ls -A fuzz/corpus/replay_csv)" ]; then
        sed -n 2,200p data/binance-spot-btcusdt-ethusdt-2024-08-09.csv >fuzz/corpus/replay_csv/spot
        sed -n 2,200p data/binance-usdm-btcusdt-2024-08-08.csv >fuzz/corpus/replay_csv/usdm
    fi
}
seed

for target in "${TARGETS[@]}"; do
    echo "==> fuzzing $target for ${SECONDS_PER_TARGET}s"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -print_final_stats=1
done
