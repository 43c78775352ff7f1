"""BlockSwap: Fisher-guided block substitution for network compression on a budget.

Reproduces Turner et al., "BlockSwap: Fisher-guided Block Substitution for Network Compression
on a Budget" (ICLR 2020). Public API::

    import blockswap as bs
    bs.build_model("wrn-40-2", "S,G(4),...")            # a network from a genotype
    bs.cost("wrn-40-2", genotype)                       # exact params / MACs, no network built
    bs.load_genotype("reference:bs800k")                # JSON, reference CSV or inline text
    bs.fisher_potential(model, x, y)                    # the paper's ranking signal (Sec. 4)
    bs.run_search(bs.SearchConfig(...), "runs/search")  # budgeted sampling + ranking, resumable
    bs.train_model(bs.recipe("cifar"), data, out, student, teacher=...)  # attention transfer
"""

__version__ = "0.1.0"

# The core: block zoo, genotypes, networks, costs (blocks.py, genotype.py, models.py, cost.py).
from .blocks import (  # noqa: E402
    DEFAULT_CANDIDATE_NAMES,
    Block,
    BlockType,
    Groups,
    default_candidates,
    families,
    parse_block,
    parse_candidates,
    register_family,
)
from .cost import Budget, CostTable, NetworkCost, cost, parse_budget  # noqa: E402
from .errors import BlockSwapError  # noqa: E402
from .genotype import Genotype, load_genotype, read_reference_csv  # noqa: E402
from .models import BlockSwapNet, build_model, build_teacher, network_spec  # noqa: E402

# Search (paper Sec. 4): Fisher potential, ranking signals, budgeted sampling, resumable search.
from .fisher import PROXIES, FisherPotential, fisher_potential, get_proxy, parse_signal  # noqa: E402
from .search import RunOptions, SearchConfig, SearchResult, run_search, sample_genotypes  # noqa: E402

# Training and distillation (paper Sec. 3.2, 5, 6): data.py, distill.py, train.py.
from .data import load_split, parse_data  # noqa: E402
from .distill import at_loss, attention_map, kd_loss  # noqa: E402
from .train import RECIPES, ModelDesc, TrainConfig, evaluate, load_model, recipe, train_model  # noqa: E402

__all__ = [
    # core
    "DEFAULT_CANDIDATE_NAMES", "Block", "BlockSwapError", "BlockSwapNet", "BlockType", "Budget",
    "CostTable", "Genotype", "Groups", "NetworkCost", "build_model", "build_teacher", "cost",
    "default_candidates", "families", "load_genotype", "network_spec", "parse_block",
    "parse_budget", "parse_candidates", "read_reference_csv", "register_family",
    # search
    "PROXIES", "FisherPotential", "RunOptions", "SearchConfig", "SearchResult", "fisher_potential",
    "get_proxy", "parse_signal", "run_search", "sample_genotypes",
    # training
    "RECIPES", "ModelDesc", "TrainConfig", "at_loss", "attention_map", "evaluate", "kd_loss",
    "load_model", "load_split", "parse_data", "recipe", "train_model",
]
