#!/usr/bin/env bash
# Side by side on one machine, one after the other: the official PyTorch GCE-GNN or TAGNN on N
# training batches (scripts/official-bench/bench_official.py) and `dmsrec bench train` on M
# batches, both 1 thread, on the ML-1M split; writes results/bench__<model>__ml-1m-paper.json.
# Usage: PYTHON=/tmp/torch/bin/python CODE=/tmp/gce-official scripts/bench-vs-official.sh gcegnn N M
# CODE is a checkout of CCIIPLab/GCE-GNN, CRIPAC-DIG/TAGNN or wangjlgz/Hypergraph-Session-Recommendation
# (SHARE; not part of this repository).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 official_batches=${2:-10} dmsrec_batches=${3:-60}
data=../shared/data/ml-1m-paper
out=results/bench__${model}__ml-1m-paper.json
tmp=$(mktemp -d)
load=$(cut -d' ' -f1 /proc/loadavg)
"${PYTHON:-python3}" scripts/official-bench/bench_official.py --model "$model" --code "$CODE" \
    --data "$data" --batches "$official_batches" --threads 1 > "$tmp/official.json"
RAYON_NUM_THREADS=1 ./target/release/dmsrec bench train --data "$data" --model "$model" \
    --batches "$dmsrec_batches" --json "$tmp/dmsrec.json" > /dev/null
"${PYTHON:-python3}" - "$tmp/official.json" "$tmp/dmsrec.json" "$out" "$load" "$0 $*" <<'PY'
import json, os, sys
official, ours = (json.load(open(p)) for p in sys.argv[1:3])
out = {
    "model": ours["model"], "dataset": ours["dataset"],
    "batches": {"official": official["batches"], "dmsrec": ours["batches"], "epoch": ours["epoch_batches"]},
    "dmsrec_epoch_s": round(ours["epoch_s"], 2), "official_epoch_s": round(official["epoch_s"], 1),
    "ratio": round(ours["epoch_s"] / official["epoch_s"], 4),
    "dmsrec_median_step_ms": round(ours["median_step_ms"], 2),
    "official_median_step_ms": round(1e3 * official["median_step_s"], 1),
    "dmsrec_peak_rss_mb": round(ours["peak_rss_mb"]), "official_peak_rss_mb": round(official["peak_rss_mb"]),
    "threads": 1, "load": float(sys.argv[4]), "torch": official["torch"],
    "command": sys.argv[5], "git": ours["git"],
}
tmp = sys.argv[3] + ".tmp"
json.dump(out, open(tmp, "w"), indent=2)
os.replace(tmp, sys.argv[3])
print(json.dumps(out, indent=2))
PY
