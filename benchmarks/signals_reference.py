"""Every ranking signal against its public reference implementation, on identical weights.

    python benchmarks/signals_reference.py --zero-cost-nas /work/.mirror/SamsungLabs+zero-cost-nas/repo \
        --naswot /work/.mirror/BayesWatch+nas-without-training/repo

The two arguments are git directories (bare or not) of SamsungLabs/zero-cost-nas and
BayesWatch/nas-without-training. Their sources are extracted to a temporary folder at run time
(`git archive HEAD`) and imported from there; nothing of them is kept or committed. Three seeded
wrn-16-2 students (different genotypes) see one seeded minibatch of 128 random 32 x 32 images;
ours run in the search's path (channels-last, exact BN on the CPU), the references as their
code does (contiguous, PyTorch's BN), each on its own copy of the same initial network.
Prints a markdown table (docs/signals.md holds its output).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import blockswap as bs

GENOTYPES = (None, "S,G(4),B(2),BG(2,M/4),G(N),BG(2,4)", "G(2),G(4),BG(4,M/4),B(2),S,G(N)")


def extract(git_dir: str, dest: Path) -> Path:
    """`git archive HEAD` of `git_dir` into `dest`."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "--git-dir", git_dir, "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def zero_cost_nas(root: Path):
    """(calc(name, net, x, y) -> summed value or per-layer arrays, copynet) from zero-cost-nas."""
    sys.path.insert(0, str(root))
    from foresight.pruners import measures, predictive
    from foresight.pruners.measures import l2_norm  # noqa: F401  (not in its load_all)

    def calc(name, net, x, y):
        net = copy.deepcopy(net)
        net.get_prunable_copy = types.MethodType(predictive.copynet, net)
        extra = {} if name == "l2_norm" else {"loss_fn": F.cross_entropy}  # l2_norm takes no loss
        return measures.calc_measure(name, net, x.device, x, y, split_data=1, **extra)

    return calc


def naswot_reference(root: Path):
    """The reference's ReLU hooks (score_networks.py) and score (scores.hooklogdet), as code."""
    source = (root / "score_networks.py").read_text()
    start = source.index("            def counting_forward_hook")
    end = source.index("            for name, module in network.named_modules():")
    hooks = "\n".join(line[12:] for line in source[start:end].splitlines())
    sys.path.insert(0, str(root))
    import scores  # noqa: E402  (the reference's scores.py)

    def score(net, x):
        network = copy.deepcopy(net).train()
        network.K = np.zeros((x.shape[0], x.shape[0]))
        scope = {"network": network, "np": np}
        exec(hooks, scope)  # defines counting_forward_hook / counting_backward_hook on `network`
        for _name, module in network.named_modules():
            if "ReLU" in str(type(module)):
                module.register_forward_hook(scope["counting_forward_hook"])
                module.register_backward_hook(scope["counting_backward_hook"])
        xj = x.clone().requires_grad_(True)  # get_batch_jacobian first, as the reference
        y = network(xj)
        y.backward(torch.ones_like(y))
        network(x.clone())
        return float(scores.get_score_func("hook_logdet")(network.K, None))

    return score


def total(arrays) -> float:
    """zero-cost-nas `find_measures`'s sum_arr: the sum of every per-layer array."""
    return float(sum(torch.sum(a) for a in arrays))


def probe_fisher(arrays, net) -> float:
    """zero-cost-nas's per-layer (per-conv) fisher restricted to each block's last conv."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    lasts = [[m for m in b.body.modules() if isinstance(m, nn.Conv2d)][-1] for b in net.blocks]
    return float(sum(arrays[layers.index(c)].reshape(c.out_channels, -1)[:, 0].double().sum() for c in lasts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zero-cost-nas", required=True, help="git dir of SamsungLabs/zero-cost-nas")
    ap.add_argument("--naswot", required=True, help="git dir of BayesWatch/nas-without-training")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="signals_reference_"))
    calc = zero_cost_nas(extract(args.zero_cost_nas, tmp / "zero-cost-nas"))
    naswot = naswot_reference(extract(args.naswot, tmp / "naswot"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    xcl = x.contiguous(memory_format=torch.channels_last)
    rows = []
    for seed, geno in enumerate(GENOTYPES):
        torch.manual_seed(seed)
        net = bs.build_model("wrn-16-2", geno)

        def ours(name, model=None):
            m = copy.deepcopy(net if model is None else model).to(memory_format=torch.channels_last)
            v = bs.parse_signal(name)(m, [(xcl, y)])
            return float(v.total if hasattr(v, "total") else v)

        used = copy.deepcopy(net)  # a model another signal ran on (BN running statistics moved)
        bs.parse_signal("fisher")(used, [(x, y)])

        def references(model, inputs):
            out = {"snip": total(calc("snip", model, inputs, y)),
                   "grad_norm": total(calc("grad_norm", model, inputs, y)),
                   "synflow": total(calc("synflow", model, inputs, y)),
                   "jacob_cov": float(calc("jacob_cov", model, inputs, y)),
                   "naswot": naswot(model, inputs),
                   "fisher": probe_fisher(calc("fisher", model, inputs, y), model),
                   "l2_norm": total(calc("l2_norm", model, inputs, y))}
            out["synflow after fisher"] = out["synflow"]
            return out

        refs = references(net, x)
        refs64 = references(copy.deepcopy(net).double(), x.double())  # the references in float64
        mine = {name: ours(name) for name in refs if name != "synflow after fisher"}
        mine["synflow after fisher"] = ours("synflow", used)
        name = "standard" if geno is None else geno
        for signal in mine:
            rel = lambda a, b: abs(a - b) / abs(b)  # noqa: E731
            rows.append((f"{name} ({seed})", signal, mine[signal], refs[signal], rel(mine[signal], refs[signal]),
                         rel(mine[signal], refs64[signal]), rel(refs[signal], refs64[signal])))
    print("| network (seed) | signal | ours | reference | ours vs reference | ours vs float64 | reference vs float64 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, signal, a, b, r, r64, rr64 in rows:
        print(f"| {name} | {signal} | {a:.8g} | {b:.8g} | {r:.1e} | {r64:.1e} | {rr64:.1e} |")

if __name__ == "__main__":
    main()
