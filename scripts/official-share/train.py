"""Trains the official PyTorch SHARE (wangjlgz/Hypergraph-Session-Recommendation) on a dmsrec TSV
split with the official train_model/test_model and main.py's defaults (the authors' main_share.py
keeps them: d 100, batch 100, Adam 1e-3, L2 0, StepLR(3, 0.1) stepped before each epoch, step 2,
window 1, dropout 0.3), seeded as the authors' init_seed(2024). Prints one JSON line per epoch
with the official test metrics (P@20, MRR@20, P@10, MRR@10). Item ids are kept as they are (the
official re-indexing is a permutation on the paper's splits).

Usage: /tmp/torch/bin/python scripts/official-share/train.py --code CHECKOUT --data DATA --epochs 3"""
import argparse, json, os, random, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import official_share  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--code", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    official_model, official_utils = official_share.load(a.code)
    opt = official_share.options()
    train = official_share.read_tsv(os.path.join(a.data, "train.tsv"))
    test = official_share.read_tsv(os.path.join(a.data, "test.tsv"))
    n_node = max(max(max(s) for s in part[0]) for part in (train, test)) + 1
    train_data = official_utils.Data(train, opt.window)
    test_data = official_utils.Data(test, opt.window)
    model = official_model.SessionGraph(opt, n_node)
    for epoch in range(a.epochs):
        t = time.time()
        official_model.train_model(model, train_data, opt)
        train_s = time.time() - t
        hit20, mrr20, hit10, mrr10 = official_model.test_model(model, test_data, opt)
        print(json.dumps({"epoch": epoch, "lr": model.optimizer.param_groups[0]["lr"], "train_s": train_s,
                          "P@20": hit20, "MRR@20": mrr20, "P@10": hit10, "MRR@10": mrr10}), flush=True)


if __name__ == "__main__":
    main()
