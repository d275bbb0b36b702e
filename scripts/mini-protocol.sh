#!/usr/bin/env bash
# The mini protocol of LLM-DMsRec on ML-1M (every phase on a seeded sample of 2,000 training and
# 500 test examples, K = 20 candidates). Resumable: rerun the same command after a kill.
#
#   scripts/mini-protocol.sh [DATA] [RUN] [--llm]
#
# By default the LLM stage replays the intents kept in mini/ml-1m-mini (item ids produced by
# SmolLM2-135M-Instruct with constrained decoding); pass --llm to generate them again (~1 h on 2
# cores). Writes results/llm-dmsrec__ml-1m-mini.json and the report in results/llm-dmsrec__ml-1m-mini/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/ml-1m-paper}
run=${2:-runs/ml1m-mini}
replay=(--replay mini/ml-1m-mini)
[[ "${3:-}" == "--llm" ]] && replay=()
cargo build --release -p dmsrec
bin=target/release/dmsrec
[[ -f "$run/data/train.tsv" ]] || "$bin" data sample --data "$data" --train 2000 --test 500 --seed 2024 --out "$run/data"
"$bin" experiment all --data "$run/data" --run "$run" --k 20 --seed 2024 --seeds 3 --epochs 20 \
  --crossfit 5 "${replay[@]}" \
  --report results/llm-dmsrec__ml-1m-mini --results results/llm-dmsrec__ml-1m-mini.json
