"""Loads a dmsrec SHARE checkpoint into the official PyTorch SessionGraph (the parameter names
are the official ones) and evaluates it with the official get_slice and forward on a test split.
Prints P@20 and MRR@20 (the official test_model's metrics) as JSON; `dmsrec evaluate --checkpoint
RUN` on the same split must print the same figures. Item ids are used as they are: the official
main.py re-indexes the items of train ∪ test to 1..n, which is the identity on the paper's splits
(every item 1..n occurs there).

Usage: /tmp/torch/bin/python scripts/official-share/compare.py --code CHECKOUT --run RUN --data DATA"""
import argparse, json, os, sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
import official_share  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--code", required=True)
    p.add_argument("--run", required=True, help="dmsrec run folder (config.json, model.safetensors)")
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    official_model, official_utils = official_share.load(a.code)
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    model_cfg = cfg["model"]
    opt = official_share.options()
    opt.hiddenSize, opt.step, opt.window = model_cfg["dim"], model_cfg["step"], model_cfg["window"]
    model = official_model.SessionGraph(opt, model_cfg["n_items"] + 1)
    weights = load_file(os.path.join(a.run, "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    unused = {"embedding2.weight", "layer_norm1.weight", "layer_norm1.bias"}
    if set(missing) - unused or unexpected:
        sys.exit(f"parameter names differ: missing {sorted(set(missing) - unused)}, unexpected {unexpected}")
    test = official_utils.Data(official_share.read_tsv(os.path.join(a.data, "test.tsv")), opt.window)
    model.eval()
    hit, mrr = [], []
    with torch.no_grad():
        for i in test.generate_batch(min(128, test.length), False):
            alias, H, HT, G, EG, items, targets, masks, edge_mask, edge_inputs = test.get_slice(i)
            targets, scores = official_model.forward(model, alias, H, HT, G, EG, items, targets, masks,
                                                     edge_mask, edge_inputs)
            for top, target in zip(scores.topk(20)[1].numpy(), targets):
                rank = np.where(top == target - 1)[0]
                hit.append(len(rank) > 0)
                mrr.append(1.0 / (rank[0] + 1) if len(rank) else 0.0)
    print(json.dumps({"P@20": 100 * float(np.mean(hit)), "MRR@20": 100 * float(np.mean(mrr)),
                      "examples": len(hit), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
