"""Times the official PyTorch code of GCE-GNN (CCIIPLab/GCE-GNN), TAGNN (CRIPAC-DIG/TAGNN) or SHARE
(wangjlgz/Hypergraph-Session-Recommendation),
unmodified and imported from the checkout given by --code, on N training batches of a dmsrec TSV
split, with the official training step (Adam lr 1e-3, L2 1e-5, batch 100, d = 100) and its
per-batch data preparation (SHARE: L2 0 and its other defaults, imported through
scripts/official-share/official_share.py). Prints one JSON object: epoch seconds extrapolated from the N batches,
the time to build the inputs once, and the peak RSS. Needs numpy and torch (and networkx for TAGNN;
scipy, networkx, nltk and pandas for SHARE, whose utils.py imports them).

The GCE-GNN global graph is built as its build_graph.py does (that script only knows the official
datasets' names), then sampled by the official utils.handle_adj."""
import argparse, json, os, resource, sys, time

import numpy as np
import torch


def read_tsv(path):
    seqs, targets = [], []
    for line in open(path):
        items, target = line.rstrip("\n").split("\t")
        seqs.append([int(x) for x in items.split()])
        targets.append(int(target))
    return seqs, targets


def global_graph(seqs, num, sample_num=12):
    """build_graph.py: pairs at distance 1..3 both ways, top sample_num by count (stable ties)."""
    adj1 = [dict() for _ in range(num)]
    for data in seqs:
        for k in range(1, 4):
            for j in range(len(data) - k):
                for a, b in ((data[j], data[j + k]), (data[j + k], data[j])):
                    adj1[a][b] = adj1[a].get(b, 0) + 1
    adj, weight = [], []
    for t in range(num):
        x = sorted(adj1[t].items(), reverse=True, key=lambda x: x[1])
        adj.append([v[0] for v in x][:sample_num])
        weight.append([v[1] for v in x][:sample_num])
    return adj, weight


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["gcegnn", "tagnn", "share"], required=True)
    p.add_argument("--code", required=True, help="checkout of the official repository")
    p.add_argument("--data", required=True)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=2024)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    if a.model == "share":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "official-share"))
        import official_share  # noqa: E402
        official_model, official_utils = official_share.load(a.code)
    else:
        sys.path.insert(0, a.code)
        import model as official_model  # noqa: E402
        import utils as official_utils  # noqa: E402

    train = read_tsv(os.path.join(a.data, "train.tsv"))
    n_node = max(max(max(s) for s in train[0]), max(train[1])) + 1
    t0 = time.time()
    opt = argparse.Namespace(hiddenSize=100, batch_size=100, batchSize=100, lr=1e-3, lr_dc=0.1,
                             lr_dc_step=3, l2=1e-5, step=1, nonhybrid=False, n_iter=1, n_sample=12,
                             n_sample_all=12, dropout_gcn=0.0, dropout_local=0.0, dropout_global=0.5,
                             alpha=0.2, activate="relu")
    steps = []
    if a.model == "gcegnn":
        seqs = [list(map(int, l.split())) for l in open(os.path.join(a.data, "all_train_seq.tsv")) if l.strip()]
        adj, num = global_graph(seqs, n_node)
        adj, num = official_utils.handle_adj(adj, n_node, 12, num)
        data = official_utils.Data(train)
        model = official_model.CombineGraph(opt, n_node, adj, num)
        loader = torch.utils.data.DataLoader(data, num_workers=0, batch_size=100, shuffle=True)
        prep_s = time.time() - t0
        n_epoch = len(loader)
        model.train()
        for i, batch in enumerate(loader):
            if i >= a.batches:
                break
            t = time.time()
            model.optimizer.zero_grad()
            targets, scores = official_model.forward(model, batch)
            loss = model.loss_function(scores, targets.long() - 1)
            loss.backward()
            model.optimizer.step()
            steps.append(time.time() - t)
    elif a.model == "share":
        opt = official_share.options()
        data = official_utils.Data(official_share.as_official(*train), opt.window)
        model = official_model.SessionGraph(opt, n_node)
        prep_s = time.time() - t0
        slices = data.generate_batch(100, True)
        n_epoch = len(slices)
        model.train()
        for i in slices[: a.batches]:
            t = time.time()
            model.optimizer.zero_grad()
            targets, scores = official_model.forward(model, *data.get_slice(i))
            loss = model.loss_function(scores, torch.Tensor(targets).long() - 1)
            loss.backward()
            model.optimizer.step()
            steps.append(time.time() - t)
    else:
        data = official_utils.Data(train, shuffle=True)
        model = official_model.SessionGraph(opt, n_node)
        prep_s = time.time() - t0
        slices = data.generate_batch(100)
        n_epoch = len(slices)
        model.train()
        for i in slices[: a.batches]:
            t = time.time()
            model.optimizer.zero_grad()
            targets, scores = official_model.forward(model, i, data)
            loss = model.loss_function(scores, torch.Tensor(targets).long() - 1)
            loss.backward()
            model.optimizer.step()
            steps.append(time.time() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "model": a.model, "batches": len(steps), "epoch_batches": n_epoch,
        "median_step_s": float(np.median(steps)), "mean_step_s": float(np.mean(steps)),
        "epoch_s": float(np.mean(steps)) * n_epoch, "prep_s": prep_s, "peak_rss_mb": rss_mb,
        "threads": a.threads, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
