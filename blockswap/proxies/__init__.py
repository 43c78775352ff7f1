"""Ranking signals for untrained candidates: the Fisher potential (the paper's), the signals the
paper compares it with (Table 1) and later zero-cost proxies, in one registry.

=============  ============================================================================
fisher[@k]     Fisher potential; ``@k`` (k > 1): summed over k SGD steps (paper Table 1)
train_acc@k    training accuracy over k SGD steps (Table 1)
l2@k           sum of the L2 norms of the weight tensors after k SGD steps (Table 1)
grad_norm@k    summed absolute weight gradients over k SGD steps (Table 1; Golub et al. 2019)
snip           SNIP saliency sum |w * dL/dw| (Lee et al. 2019), one minibatch
synflow        SynFlow sum |w * dR/dw| (Tanaka et al. 2020), data-free
naswot         log|K| of the ReLU-pattern kernel (Mellor et al. 2021, v2 "NASWOT")
jacob_cov      input-Jacobian correlation score (Mellor et al. 2021, v1)
=============  ============================================================================
"""

from . import training, zero_cost  # noqa: F401  (register their signals)
from .fisher import FisherPotential, block_fisher, fisher_potential, probe_outputs
from .registry import (PROXIES, NonFiniteSignal, Proxy, ProxyOptions, Signal, check_batch, get_proxy, parse_signal,
                       rank, register_proxy)

__all__ = ["PROXIES", "FisherPotential", "NonFiniteSignal", "Proxy", "ProxyOptions", "Signal", "block_fisher",
           "check_batch", "fisher_potential", "get_proxy", "parse_signal", "probe_outputs", "rank", "register_proxy"]
