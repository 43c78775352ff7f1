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

The package follows the data: `space` (pure description: blocks, networks, genotypes, budgets,
costs) -> `nn` (modules) -> `proxies` (ranking signals) -> `search` -> `train` -> `report`,
with `data` feeding search and training and `cli` on top.
"""

from ._version import __version__  # noqa: F401  (re-exported as blockswap.__version__)

from .workers import quiet_start  # noqa: E402

quiet_start()  # first: a search's worker process ignores Ctrl-C from its first import (`workers`)

# The search space and its modules (paper Sec. 3.1): space/, nn/.
from .errors import BlockSwapError  # noqa: E402
from .nn import (Block, BlockSwapNet, TorchvisionTeacher, build_model, build_teacher,  # noqa: E402
                 register_students_space, students_space)
from .space import (  # noqa: E402
    DEFAULT_CANDIDATE_NAMES,
    BlockType,
    Budget,
    CostTable,
    Genotype,
    Groups,
    NetworkCost,
    NetworkSpec,
    default_candidates,
    families,
    load_genotype,
    network_spec,
    networks,
    parse_block,
    parse_budget,
    parse_candidates,
    read_reference_csv,
    register_family,
    register_network,
)
from .space import network_cost as cost  # noqa: E402

# Search (paper Sec. 4): ranking signals, budgeted sampling, resumable search.
from .proxies import PROXIES, FisherPotential, fisher_potential, get_proxy, parse_signal, rank  # noqa: E402
from .search import RunOptions, SearchConfig, SearchResult, run_search, sample_genotypes  # noqa: E402

# Data, training and distillation (paper Sec. 3.2, 5, 6).
from .data import load_split, parse_data  # noqa: E402
from .train import (  # noqa: E402
    RECIPES,
    ModelDesc,
    TrainConfig,
    at_loss,
    attention_map,
    evaluate,
    kd_loss,
    load_model,
    recipe,
    train_model,
)

# Detection (paper Sec. 7): Mask R-CNN with a BlockSwap backbone on COCO-layout data:
# `build_detector`, `evaluate_detector`, `DetectorConfig`, `load_detector`, `train_detector`,
# imported on first use (`__getattr__` below, PEP 562): torchvision's detection stack is slow to
# import and a classifier never needs it.
_DETECTION = ("DetectorConfig", "build_detector", "evaluate_detector", "load_detector", "train_detector")

# Deployment (paper Sec. 8): ONNX export and measured latency; onnx is imported on first use.
from .export import benchmark, export_onnx, verify_onnx  # noqa: E402

__all__ = [
    # space and modules
    "DEFAULT_CANDIDATE_NAMES", "Block", "BlockSwapError", "BlockSwapNet", "BlockType", "Budget",
    "CostTable", "Genotype", "Groups", "NetworkCost", "NetworkSpec", "TorchvisionTeacher", "build_model",
    "build_teacher", "cost", "default_candidates", "families", "load_genotype", "network_spec", "networks",
    "parse_block", "parse_budget", "parse_candidates", "read_reference_csv", "register_family",
    "register_network", "register_students_space", "students_space",
    # search
    "PROXIES", "FisherPotential", "RunOptions", "SearchConfig", "SearchResult", "fisher_potential",
    "get_proxy", "parse_signal", "rank", "run_search", "sample_genotypes",
    # data and training
    "RECIPES", "ModelDesc", "TrainConfig", "at_loss", "attention_map", "evaluate", "kd_loss",
    "load_model", "load_split", "parse_data", "recipe", "train_model",
    # detection
    "DetectorConfig", "build_detector", "evaluate_detector", "load_detector", "train_detector",
    # deployment
    "benchmark", "export_onnx", "verify_onnx",
]


def __getattr__(name: str):
    if name not in _DETECTION:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "build_detector":
        from .nn.detection import build_detector as value
    elif name == "evaluate_detector":
        from .train.coco_eval import evaluate_detector as value
    else:
        from .train import detector

        value = getattr(detector, name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
