#!/usr/bin/env python3
"""SR-GNN seed spread on the paper split: dmsrec runs against the official PyTorch code.

Reads dmsrec run folders (DIR/paper/result.json, one per seed) and the per-seed JSON files that
scripts/official-srgnn/run_seeds.py writes, takes the paper protocol (the best value of each
metric over the first EPOCHS epochs), and writes per-seed values, means, standard deviations,
the ratio of each mean to the paper's Table 2, and Welch's t for dmsrec vs official.
Standard library only.
"""
import argparse, json, math, os, statistics, subprocess, tempfile

KEYS = ["P@5", "P@10", "P@20", "MRR@5", "MRR@10", "MRR@20"]
PAPER = {"P@5": 3.6294, "P@10": 6.1047, "P@20": 9.9682, "MRR@5": 1.9058, "MRR@10": 2.2262, "MRR@20": 2.4927}


def best(epochs, n):
    rows = epochs[:n]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} epochs recorded, {n} asked")
    return {k: round(max(r[k] for r in rows), 4) for k in KEYS}


def summary(per_seed):
    vals = list(per_seed.values())
    out = {"n": len(vals), "mean": {}, "std": {}, "mean_over_paper": {}}
    for k in KEYS:
        xs = [v[k] for v in vals]
        out["mean"][k] = round(statistics.mean(xs), 4)
        out["std"][k] = round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0
        out["mean_over_paper"][k] = round(statistics.mean(xs) / PAPER[k], 4)
    return out


def welch_t(a, b):
    out = {}
    for k in KEYS:
        xa, xb = [v[k] for v in a.values()], [v[k] for v in b.values()]
        se = math.sqrt(statistics.variance(xa) / len(xa) + statistics.variance(xb) / len(xb))
        out[k] = round((statistics.mean(xa) - statistics.mean(xb)) / se, 2) if se > 0 else 0.0
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ours", nargs="+", default=[], help="SEED=RUN_DIR of dmsrec train runs")
    p.add_argument("--official", nargs="*", default=[], help="seed_*.json files of run_seeds.py")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--also-epochs", type=int, help="also summarize dmsrec over this many epochs")
    p.add_argument("--label", default="official PyTorch SR-GNN")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    ours, ours_also = {}, {}
    for pair in a.ours:
        seed, run = pair.split("=", 1)
        with open(os.path.join(run, "paper", "result.json")) as f:
            result = json.load(f)
        ours[seed] = best([e["metrics"] for e in result["epochs"]], a.epochs)
        if a.also_epochs:
            ours_also[seed] = best([e["metrics"] for e in result["epochs"]], a.also_epochs)
    official = {}
    for path in a.official:
        with open(path) as f:
            run = json.load(f)
        official[str(run["seed"])] = best(run["epochs"], a.epochs)
    report = {
        "model": "srgnn",
        "dataset": "ml-1m-paper",
        "variant": "plain",
        "protocol": "paper (best value of each metric over the epochs)",
        "epochs": a.epochs,
        "schedule": "step x0.1 every 3 epochs, official offset",
        "paper_table2": PAPER,
        "dmsrec": {"seeds": ours, **summary(ours)},
    }
    if ours_also:
        report[f"dmsrec_{a.also_epochs}_epochs"] = {"seeds": ours_also, **summary(ours_also)}
    if official:
        report["official"] = {"label": a.label, "seeds": official, **summary(official)}
        report["welch_t_dmsrec_minus_official"] = welch_t(ours, official)
    try:
        report["git"] = subprocess.check_output(["git", "rev-parse", "--short=12", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    folder = os.path.dirname(os.path.abspath(a.out))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(f.name, a.out)
    for name in ("dmsrec", "official"):
        if name in report:
            r = report[name]
            print(f"{name:8s} n={r['n']:2d} " + "  ".join(f"{k} {r['mean'][k]:.4f}±{r['std'][k]:.4f} ({100 * r['mean_over_paper'][k]:.1f}%)" for k in KEYS))
    if official:
        print("welch t  " + "  ".join(f"{k} {v:+.2f}" for k, v in report["welch_t_dmsrec_minus_official"].items()))


if __name__ == "__main__":
    main()
