#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets) for a given time each; installs cargo-fuzz and a
# nightly toolchain when missing. A crash leaves its input in fuzz/artifacts/<target>/: turn it
# into a regression test next to the code it broke.
#
# Usage: docker/fuzz.sh [seconds per target, default 60] [target...]
#   targets: decode engines replay_csv replay_parquet (all when none is named)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode engines replay_csv replay_parquet)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# Seeds: real records (the contract's examples) and real replay rows.
seed() {
    mkdir -p fuzz/corpus/decode fuzz/corpus/engines fuzz/corpus/replay_csv fuzz/corpus/replay_parquet
    if [ -z "$(ls -A fuzz/corpus/decode)" ]; then
        python3 - <<'PY'
import re
text = open("docs/events.md").read()
for i, block in enumerate(re.findall(r"```json\n(.*?)```", text, re.S)):
    open(f"fuzz/corpus/decode/example{i}.json", "w").write(block)
PY
    fi
    # The engines target reads lines of a letter (where the record comes in) and a record; see
    # fuzz/fuzz_targets/engines.rs.
    if [ -z "$(ls -A fuzz/corpus/engines)" ]; then
        python3 - <<'PY'
import json, re
text = open("docs/events.md").read()
topic = {"quote": "m", "trade": "m", "depth": "m", "symbol_status": "m", "ofi_window": "o",
         "order_intent": "i", "cancel_intent": "i", "decision": "i",
         "exec_report": "e", "cost_model": "e", "trading_halt": "e"}
records = []
for block in re.findall(r"```json\n(.*?)```", text, re.S):
    event = json.loads(block)
    if event.get("event_type") in topic:
        records.append((topic[event["event_type"]], json.dumps(event, separators=(",", ":"))))
def write(name, lines):
    open(f"fuzz/corpus/engines/{name}", "w").write("".join(line + "\n" for line in lines))
for i, (t, r) in enumerate(records):
    write(f"live{i}", [t + r])
    if t in "eo":
        write(f"restart{i}", [t.upper() + r])
# One session: a restart from the ledger, every example live, then a partition taken over.
write("session", [t.upper() + r for t, r in records if t in "eo"] + [t + r for t, r in records]
      + ["t" + r for t, r in records if t == "e"])
PY
    fi
    if [ -z "$(ls -A fuzz/corpus/replay_csv)" ]; then
        sed -n 2,200p data/binance-spot-btcusdt-ethusdt-2024-08-09.csv >fuzz/corpus/replay_csv/spot
        sed -n 2,200p data/binance-usdm-btcusdt-2024-08-08.csv >fuzz/corpus/replay_csv/usdm
    fi
    # The samples, and fuzz/seeds/: the first 200 rows of each CSV sample (`data-plane convert`).
    # A sample is larger than -max_len, so the fuzzer reads only its start.
    if [ -z "$(ls -A fuzz/corpus/replay_parquet)" ]; then
        cp data/parquet/*.parquet fuzz/seeds/replay_parquet/*.parquet fuzz/corpus/replay_parquet/
    fi
}
seed

for target in "${TARGETS[@]}"; do
    echo "==> fuzzing $target for ${SECONDS_PER_TARGET}s"
    # An input that hangs a core is a finding too; libFuzzer's default timeout (20 min) would
    # outlast the run.
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=60 -print_final_stats=1
done
