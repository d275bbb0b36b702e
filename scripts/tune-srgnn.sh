#!/usr/bin/env bash
# A small hyper-parameter search for SR-GNN on the VALIDATION split only (never on test).
#
#   scripts/tune-srgnn.sh DATASET_DIR OUT_DIR [EPOCHS]
#
# Every configuration trains with `--protocol valid` (a seeded 10% of the training examples held
# out, early stopping on valid MRR@20) and is ranked by its best validation MRR@20. The test
# metrics in each run's result.json are not looked at for the choice. A run that was killed
# resumes where it stopped when the script is started again.
set -euo pipefail
data=${1:?dataset folder}
out=${2:?output folder}
epochs=${3:-12}
bin=${DMSREC_BIN:-target/release/dmsrec}
mkdir -p "$out"

# name | extra arguments
configs=(
  "paper-step|--schedule step"
  "constant|--schedule constant"
  "constant-l2=0|--schedule constant --l2 0"
  "cosine|--schedule cosine"
  "constant-drop0.2|--schedule constant --session-dropout 0.2"
  "cosine-l2=0|--schedule cosine --l2 0"
)
for entry in "${configs[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  if [ -f "$out/$name/valid/result.json" ]; then
    echo "== $name: done before"
    continue
  fi
  echo "== $name: $args"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$bin" train --data "$data" --protocol valid --epochs "$epochs" --patience 3 --out "$out/$name" $args \
    > "$out/$name.log" 2>&1
  echo "   $(( $(date +%s) - start )) s"
done

python3 - "$out" "${configs[@]}" <<'PY'
import json, sys, os
out, configs = sys.argv[1], sys.argv[2:]
rows = []
for entry in configs:
    name, args = entry.split("|", 1)
    path = os.path.join(out, name, "valid", "result.json")
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    best = max(r["epochs"], key=lambda e: e["metrics"]["MRR@20"])
    train_s = sum(e["train_s"] + e["eval_s"] for e in r["epochs"])
    rows.append((best["metrics"]["MRR@20"], best["metrics"]["P@20"], name, args, best["epoch"], len(r["epochs"]), train_s))
rows.sort(reverse=True)
summary = [{"config": n, "args": a, "valid_MRR@20": m, "valid_P@20": p, "best_epoch": e, "epochs_run": k, "cost_s": round(c, 1)}
           for m, p, n, a, e, k, c in rows]
json.dump(summary, open(os.path.join(out, "search.json"), "w"), indent=2)
print(f"{'config':<20} {'valid MRR@20':>12} {'valid P@20':>10} {'best ep':>7} {'epochs':>6} {'cost s':>7}  args")
for s in summary:
    print(f"{s['config']:<20} {s['valid_MRR@20']:>12.4f} {s['valid_P@20']:>10.4f} {s['best_epoch']:>7} {s['epochs_run']:>6} {s['cost_s']:>7.0f}  {s['args']}")
PY
