#!/usr/bin/env python3
"""Mean over seeds of `dmsrec train --results` files (paper protocol), against the paper's Table 2.

Each input is a results JSON of one seed of the same model, dataset and recipe; the output has
the shape of results/srgnn-seeds__ml-1m-paper.json: per-seed values, their mean and standard
deviation, and each mean over the paper's figure. Standard library only.

    python3 scripts/seed_mean.py --out results/gcegnn-seeds__beauty-paper.json \
        results/gcegnn__beauty-paper.json runs/seeds/gcegnn-beauty-1.json ...
"""
import argparse, json, statistics, subprocess

KEYS = ["P@5", "P@10", "P@20", "MRR@5", "MRR@10", "MRR@20"]
# Paper Table 2 (P@5 P@10 P@20 MRR@5 MRR@10 MRR@20).
PAPER = {
    ("srgnn", "ml-1m-paper"): [3.6294, 6.1047, 9.9682, 1.9058, 2.2262, 2.4927],
    ("gcegnn", "beauty-paper"): [8.8681, 13.4485, 18.8497, 4.3143, 4.9262, 5.3011],
    ("gcegnn", "ml-1m-paper"): [4.6663, 8.1954, 13.2631, 1.9797, 2.4447, 2.7717],
    ("tagnn", "beauty-paper"): [7.1634, 10.7623, 15.2566, 4.0242, 4.4925, 4.8059],
    ("tagnn", "ml-1m-paper"): [3.2781, 5.4022, 8.8476, 1.7383, 2.0041, 2.2366],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results JSON files, one per seed")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    runs = [json.load(open(path)) for path in a.results]
    first = runs[0]
    same = ("model", "dataset", "epochs", "schedule", "model_config", "session_dropout")
    for path, r in zip(a.results, runs):
        for key in same:
            if r.get(key) != first.get(key):
                raise SystemExit(f"{path}: {key} {r.get(key)!r} differs from {a.results[0]}'s {first.get(key)!r}")
        if r.get("partial"):
            raise SystemExit(f"{path}: a partial run")
    paper = dict(zip(KEYS, PAPER[(first["model"], first["dataset"])]))
    seeds = {str(r["seed"]): {k: round(r["metrics"]["paper"][k], 4) for k in KEYS} for r in runs}
    if len(seeds) != len(runs):
        raise SystemExit("two files have the same seed")
    vals = list(seeds.values())
    mean = {k: statistics.mean(v[k] for v in vals) for k in KEYS}
    out = {
        "model": first["model"],
        "dataset": first["dataset"],
        "variant": first.get("variant", "plain"),
        "protocol": "paper (best value of each metric over the epochs)",
        "epochs": first["epochs"],
        "schedule": first["schedule"],
        "paper_table2": paper,
        "dmsrec": {
            "seeds": seeds,
            "n": len(vals),
            "mean": {k: round(mean[k], 4) for k in KEYS},
            "std": {k: round(statistics.stdev(v[k] for v in vals), 4) if len(vals) > 1 else 0.0 for k in KEYS},
            "min": {k: min(v[k] for v in vals) for k in KEYS},
            "mean_over_paper": {k: round(mean[k] / paper[k], 4) for k in KEYS},
        },
        "commands": sorted({r["command"] for r in runs}),
        "threads": first.get("threads"),
        "git": subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(a.out, {k: out["dmsrec"]["mean_over_paper"][k] for k in KEYS})


if __name__ == "__main__":
    main()
