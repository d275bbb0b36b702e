"""Runs the official SR-GNN PyTorch code (pytorch_code/model.py and utils.py of
github.com/CRIPAC-DIG/SR-GNN, unmodified, from the folder given by --code) over several seeds on
a dmsrec TSV split, recording P/MRR@5/10/20 after every epoch in OUT/seed_<S>.json (rewritten
atomically after each epoch). The training loop is the one of the official main.py/train_test:
scheduler.step() first, Adam with L2 1e-5, batch 100, d = 100; only the test loop is extended
from @20 to @5/@10/@20. Needs numpy and torch."""
import argparse, json, os, random, subprocess, sys, time

import numpy as np
import torch


def read_tsv(path):
    seqs, targets = [], []
    for line in open(path):
        items, target = line.rstrip("\n").split("\t")
        seqs.append([int(x) for x in items.split()])
        targets.append(int(target))
    return seqs, targets


def official(code):
    sys.path.insert(0, code)
    import model, utils  # noqa: E401 (the official files)
    return model, utils


def evaluate(model, test_data, batch_size, forward, trans_to_cpu):
    model.eval()
    ranks = []
    with torch.no_grad():
        for i in test_data.generate_batch(batch_size):
            targets, scores = forward(model, i, test_data)
            top = trans_to_cpu(scores.topk(20)[1]).numpy()
            for row, target in zip(top, targets):
                hit = np.where(row == target - 1)[0]
                ranks.append(hit[0] + 1 if len(hit) else 0)
    ranks = np.array(ranks)
    out = {}
    for k in (5, 10, 20):
        inside = (ranks > 0) & (ranks <= k)
        out[f"P@{k}"] = float(inside.mean() * 100)
        out[f"MRR@{k}"] = float(np.where(inside, 1.0 / np.maximum(ranks, 1), 0).mean() * 100)
    return out


def run_one(args):
    official_model, official_utils = official(args.code)
    SessionGraph, forward = official_model.SessionGraph, official_model.forward
    trans_to_cuda, trans_to_cpu, Data = official_model.trans_to_cuda, official_model.trans_to_cpu, official_utils.Data
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.cuda.manual_seed_all(args.seed)
    torch.set_num_threads(args.threads)
    train = read_tsv(os.path.join(args.data, "train.tsv"))
    test = read_tsv(os.path.join(args.data, "test.tsv"))
    n_node = max(max(max(s) for s in train[0]), max(train[1]), max(max(s) for s in test[0]), max(test[1])) + 1
    opt = argparse.Namespace(hiddenSize=100, batchSize=100, lr=1e-3, lr_dc=0.1, lr_dc_step=3,
                             l2=1e-5, step=1, nonhybrid=False)
    model = trans_to_cuda(SessionGraph(opt, n_node))
    train_data, test_data = Data(train, shuffle=True), Data(test, shuffle=False)
    record = {"seed": args.seed, "n_node": n_node, "device": torch.cuda.get_device_name(0)
              if torch.cuda.is_available() else "cpu", "torch": torch.__version__, "epochs": []}
    path = os.path.join(args.out, f"seed_{args.seed}.json")
    for epoch in range(args.epochs):
        # The official loop: scheduler.step() first, then one pass of training, then test.
        model.scheduler.step()
        lr = model.optimizer.param_groups[0]["lr"]
        model.train()
        start, total_loss = time.time(), 0.0
        slices = train_data.generate_batch(model.batch_size)
        if args.max_batches:
            slices = slices[: args.max_batches]
        for i in slices:
            model.optimizer.zero_grad()
            targets, scores = forward(model, i, train_data)
            targets = trans_to_cuda(torch.Tensor(targets).long())
            loss = model.loss_function(scores, targets - 1)
            loss.backward()
            model.optimizer.step()
            total_loss += loss.item()
        train_s = time.time() - start
        start = time.time()
        metrics = evaluate(model, test_data, model.batch_size, forward, trans_to_cpu)
        row = {"epoch": epoch, "lr": lr, "loss": total_loss, "train_s": train_s,
               "test_s": time.time() - start, **metrics}
        record["epochs"].append(row)
        print(json.dumps(row), flush=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="folder with train.tsv and test.tsv")
    p.add_argument("--code", required=True, help="the official pytorch_code folder")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="2024")
    p.add_argument("--seed", type=int)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batches", type=int, default=0)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.seed is not None:
        return run_one(args)
    procs = []
    for seed in args.seeds.split(","):
        cmd = [sys.executable, __file__, "--data", args.data, "--code", args.code, "--out", args.out, "--seed", seed,
               "--epochs", str(args.epochs), "--threads", str(args.threads),
               "--max-batches", str(args.max_batches)]
        log = open(os.path.join(args.out, f"seed_{seed}.log"), "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    for proc in procs:
        proc.wait()


if __name__ == "__main__":
    main()
