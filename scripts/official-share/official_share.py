"""Imports the official SHARE code (wangjlgz/Hypergraph-Session-Recommendation) from a checkout,
unmodified. Its utils.py imports modules that it never uses on the path we run; one of them,
scipy.sparse.linalg.eigen.arpack, no longer exists in current SciPy, so it is stubbed here."""
import argparse
import sys
import types

import numpy as np


def load(code):
    """The official `model` and `utils` modules from the checkout at `code`."""
    for name in ("scipy.sparse.linalg.eigen", "scipy.sparse.linalg.eigen.arpack"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.eigsh = None
            sys.modules[name] = stub
    sys.path.insert(0, code)
    import model as official_model  # noqa: E402
    import utils as official_utils  # noqa: E402
    return official_model, official_utils


def options(l2=0.0):
    """The official main.py defaults (the authors' main_share.py keeps them)."""
    return argparse.Namespace(hiddenSize=100, batchSize=100, lr=1e-3, lr_dc=0.1, lr_dc_step=3, l2=l2,
                              step=2, window=1, dropout=0.3, nonhybrid=False, dataset="ml-1m")


def as_official(seqs, targets):
    """A split as the official Data() takes it. The sequences are handed over as a NumPy object
    array: the official `np.asarray(inputs)` of ragged lists worked on the NumPy of its day and
    is an error now (the authors' copy passes dtype=object for the same reason)."""
    inputs = np.empty(len(seqs), dtype=object)
    inputs[:] = seqs
    return inputs, targets


def read_tsv(path):
    seqs, targets = [], []
    for line in open(path):
        items, target = line.rstrip("\n").split("\t")
        seqs.append([int(x) for x in items.split()])
        targets.append(int(target))
    return as_official(seqs, targets)
