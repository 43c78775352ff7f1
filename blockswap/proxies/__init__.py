"""Ranking signals for untrained candidates: the Fisher potential (the paper's), the signals the
paper compares it with (Table 1) and later zero-cost proxies, in one registry.

=============  ============================================================================
fisher[@k]     Fisher potential; ``@k`` (k > 1): summed over k SGD steps (paper Table 1)
train_acc@k    training accuracy over k SGD steps (Table 1)
weight_l2@k    sum of ||W||_F over conv/linear weights after k SGD steps (Table 1; 0.1: l2@k)
grad_l1@k      summed |dL/dW| over conv/linear weights over k SGD steps (Table 1; 0.1: grad_norm@k)
snip           SNIP saliency sum |w * dL/dw| (Lee et al. 2019), one minibatch
grad_norm      sum of ||dL/dW||_F over conv/linear weights (zero-cost-nas), one minibatch
l2_norm        sum of ||W||_F over conv/linear weights at initialisation (zero-cost-nas)
synflow        SynFlow sum |w * dR/dw| (Tanaka et al. 2020), BN the identity, data-free
naswot         log|K| of the ReLU-pattern kernel (Mellor et al. 2021, v2 "NASWOT")
jacob_cov      input-Jacobian correlation score (Mellor et al. 2021, v1)
params, macs   the candidate's parameters and MACs per image, as built
=============  ============================================================================

Rank by one of them or by an aggregate, ``mean_rank(fisher,macs,synflow)`` (`parse_rank_by`).
Exact definitions and references: docs/signals.md.
"""

from . import training, zero_cost, cost  # noqa: F401  (register their signals, the paper's first)
from .fisher import FisherPotential, block_fisher, fisher_potential
from .probes import block_probe_outputs, probe_outputs
from .ranking import AGGREGATES, MeanRank, RankBy, average_ranks, parse_rank_by
from .registry import (PROXIES, NonFiniteSignal, Proxy, ProxyOptions, Signal, check_batch, check_model, get_proxy,
                       parse_signal, rank, register_proxy)

__all__ = ["AGGREGATES", "PROXIES", "FisherPotential", "MeanRank", "NonFiniteSignal", "Proxy", "ProxyOptions",
           "RankBy", "Signal", "average_ranks", "block_fisher", "block_probe_outputs", "check_batch", "check_model",
           "fisher_potential", "get_proxy", "parse_rank_by", "parse_signal", "probe_outputs", "rank",
           "register_proxy"]
