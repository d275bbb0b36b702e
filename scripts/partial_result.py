"""Writes a results JSON (the shape of `dmsrec train --results`, paper protocol) from the
history.json of a run that is still training or was stopped: best of each metric over the epochs
finished so far, marked "partial" with the epoch count. Usage:
    python3 scripts/partial_result.py RUN_DIR/paper OUT.json "COMMAND" """
import json, os, statistics, subprocess, sys

run, out, command = sys.argv[1:4]
history = json.load(open(os.path.join(run, "history.json")))["epochs"]
config = json.load(open(os.path.join(run, "config.json")))
cols = ["P@5", "P@10", "P@20", "MRR@5", "MRR@10", "MRR@20"]
best = {c: max(e["metrics"][c] for e in history) for c in cols}
git = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
value = {
    "model": config["model"]["model"], "model_config": config["model"], "dataset": config["dataset"],
    "variant": "plain", "partial": True, "epochs_finished": len(history), "epochs": config["train"]["epochs"],
    "metrics": {"paper": best}, "seed": config["train"]["seed"], "schedule": config["train"]["schedule"],
    "epoch_s_median": statistics.median(e["train_s"] for e in history),
    "wall_s": sum(e["train_s"] + e["eval_s"] for e in history), "command": command, "git": git,
    "threads": "1",
}
tmp = out + ".tmp"
json.dump(value, open(tmp, "w"), indent=2, sort_keys=True)
os.replace(tmp, out)
print(json.dumps(best))
