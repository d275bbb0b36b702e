#!/usr/bin/env bash
# Side by side, 1 thread each, the same 20 ML-1M test prompts (the authors' 50 candidates),
# constrained, greedy: dmsrec's embedded backend (f32, Q8_0 and the file's Q4_1 in memory)
# against llama.cpp (llama-cpp-python's server, grammar-constrained) on the Q4_1 file and on a
# Q8_0 requantization of it. Rounds alternate so that load changes hit both sides.
#
#   LLAMA_PY=/path/to/python-with-llama_cpp[server] scripts/bench-intents-vs-llamacpp.sh [ROUNDS] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
OUT=${2:-runs/bench-intents-vs-llamacpp}
PY=${LLAMA_PY:?set LLAMA_PY to a python that has llama_cpp[server]}
DATA=${DATA:-../shared/data/ml-1m-paper}
Q41=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
Q80=$OUT/SmolLM2-135M-Instruct.Q8_0.gguf
BIN=${BIN:-target/release/dmsrec}
PORT=${PORT:-8765}
mkdir -p "$OUT"
if [ ! -f "$Q80" ]; then
  "$PY" - "$Q41" "$Q80" <<'PYEOF' >/dev/null 2>&1
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.allow_requantize, p.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, True, 1
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
PYEOF
fi
export RAYON_NUM_THREADS=1
llamacpp() { # $1 = label, $2 = gguf file, $3 = round
  "$PY" -m llama_cpp.server --model "$2" --host 127.0.0.1 --port "$PORT" --n_threads 1 --n_threads_batch 1 \
    --n_ctx 2048 --model_alias "$1" >"$OUT/server-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break; sleep 0.5; done
  rm -rf "$OUT/llamacpp-$1-r$3"
  "$BIN" intents --data "$DATA" --candidates "$DATA/test_candidates.tsv" --split test --limit 20 --backend http \
    --url "http://127.0.0.1:$PORT" --model-name "$1" --concurrency 1 --guided llama-grammar \
    --out "$OUT/llamacpp-$1-r$3" >"$OUT/llamacpp-$1-r$3.log" 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for r in $(seq "$ROUNDS"); do
  echo "round $r: $(uptime)"
  "$BIN" bench intents --data "$DATA" --weights auto,q8_0,native --batch 8 --no-encoder --json "$OUT/dmsrec-r$r.json" >"$OUT/dmsrec-r$r.log" 2>&1
  llamacpp q4_1 "$Q41" "$r"
  llamacpp q8_0 "$Q80" "$r"
done
python3 - "$OUT" "$ROUNDS" <<'PYEOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for r in range(1, rounds + 1):
    for row in json.load(open(f"{out}/dmsrec-r{r}.json"))["llm"]:
        rows.setdefault(f"dmsrec {row['resolved_weights']}", []).append(row["prompts_per_s"])
    for q in ("q4_1", "q8_0"):
        s = json.load(open(f"{out}/llamacpp-{q}-r{r}/summary_test.json"))
        rows.setdefault(f"llama.cpp {q}", []).append(s["prompts_per_s"])
summary = {k: {"prompts_per_s": v, "median": statistics.median(v)} for k, v in rows.items()}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
for k, v in summary.items():
    print(f"{k:18s} median {v['median']:.3f} prompts/s  ({', '.join(f'{x:.3f}' for x in v['prompts_per_s'])})")
PYEOF
