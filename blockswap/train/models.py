"""What a checkpoint needs to rebuild its network: a `ModelDesc` (BlockSwap network + genotype,
or a torchvision model), built under a seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BlockSwapError, choices
from ..nn.network import build_model
from ..nn.teacher import TEACHERS, build_teacher
from ..seeding import torch_seed
from ..space.costs import network_cost
from ..space.genotype import load_genotype
from ..space.networks import network_spec
from ..space.refs import TORCHVISION_PREFIX, torchvision_arch

KINDS = ("blockswap", "torchvision")


@dataclass(frozen=True)
class ModelDesc:
    """A network that can be rebuilt from its description alone.

    ``kind="blockswap"``: `name` is ``wrn-D-k``/``resnet18``/``resnet34``, or
    ``torchvision:resnet50`` for the student space of a torchvision ResNet (`nn.discover`), and
    `genotype` its block types (None: all standard); ``kind="torchvision"``: torchvision's
    post-activation network itself (a teacher: ``resnet34``, the paper's, ``resnet50``, ...). `num_classes` / `input_size`
    None mean "from the data" / "the network's default" (32 for WRN, 224 for ResNets).
    """

    kind: str
    name: str
    genotype: str | None = None
    num_classes: int | None = None
    input_size: int | None = None
    # Unstructured pruning of this network (paper Appendix C; `train.prune`): "l1" or "snip", the
    # budget of non-zero parameters, and for l1 the trained teacher (run folder) whose weights it prunes.
    prune: str | None = None
    prune_params: int | None = None
    prune_source: str | None = None

    def __post_init__(self) -> None:
        self._check_prune()
        if self.kind not in KINDS:
            raise BlockSwapError(f"unknown model kind {self.kind!r}; valid kinds: {choices(KINDS)}")
        if self.kind == "torchvision":
            key = self.name.strip().lower()
            if key not in TEACHERS:
                raise BlockSwapError(f"unknown torchvision model {self.name!r}; valid: {choices(TEACHERS)}")
            default_size = 224
        else:
            spec = network_spec(self.name)  # raises on a bad name
            key, default_size = spec.name, spec.input_size
            if self.genotype is not None:
                object.__setattr__(self, "genotype", load_genotype(self.genotype, key).text)
        object.__setattr__(self, "name", key)
        if self.input_size is None:
            object.__setattr__(self, "input_size", default_size)
        elif not (isinstance(self.input_size, int) and self.input_size >= 8):
            raise BlockSwapError(f"input size must be an integer >= 8 pixels, got {self.input_size!r}")

    def _check_prune(self) -> None:
        if self.prune is None:
            if self.prune_params is not None or self.prune_source is not None:
                raise BlockSwapError("a pruning budget or source needs a pruning method (l1 or snip)")
            return
        from .prune import check_prune_method

        check_prune_method(self.prune)
        if self.kind != "blockswap" or self.genotype not in (None, ""):
            raise BlockSwapError("pruning applies to a BlockSwap network with standard blocks (the teacher's); "
                                 "leave the genotype out")
        if not isinstance(self.prune_params, int) or isinstance(self.prune_params, bool) or self.prune_params < 1:
            raise BlockSwapError(f"pruning needs a budget of non-zero parameters, got {self.prune_params!r}")
        if (self.prune == "l1") != (self.prune_source is not None):
            raise BlockSwapError("l1 pruning needs the trained teacher whose weights it prunes (prune_source); "
                                 "snip prunes at initialisation and takes none")

    @property
    def text(self) -> str:
        return TORCHVISION_PREFIX + self.name if self.kind == "torchvision" else self.name

    def build(self) -> nn.Module:
        """A freshly initialised network (global RNG: call under a seed, see `init_model`)."""
        if self.kind == "torchvision":
            return build_teacher(self.name, None, self.num_classes or 1000)
        return build_model(self.name, self.genotype, self.num_classes)

    def cost(self) -> dict[str, int]:
        """Parameters and MACs per image: analytic for BlockSwap nets, counted for torchvision."""
        if self.kind == "blockswap":
            c = network_cost(self.name, self.genotype, self.input_size, self.num_classes)
            return {"params": c.params, "macs": c.macs,
                    **({"nonzero_params": self.prune_params} if self.prune else {})}
        return counted_cost(self.build(), self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def counted_cost(net: nn.Module, input_size: int) -> dict[str, int]:
    """Parameters and MACs per image of a built network, every weight counted (dense): torch's
    FLOP counter on one image, for networks with no analytic cost (torchvision, checkpoints)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, input_size, input_size, device=next(net.parameters()).device))
    # One multiply-accumulate is two FLOPs in torch's counter.
    return {"params": sum(p.numel() for p in net.parameters()), "macs": counter.get_total_flops() // 2}


def parse_model(text: str, genotype: str | None = None, num_classes: int | None = None,
                input_size: int | None = None) -> ModelDesc:
    """'wrn-40-2' / 'resnet34' (BlockSwap networks) or 'torchvision:resnet34'."""
    arch = torchvision_arch(str(text))
    if arch is not None:
        if genotype is not None:  # a student in the space of torchvision's network (`nn.discover`)
            return ModelDesc("blockswap", TORCHVISION_PREFIX + arch, genotype, num_classes, input_size)
        return ModelDesc("torchvision", arch, None, num_classes, input_size)
    if ":" in str(text):
        raise BlockSwapError(f"unknown model {text!r}; write a network name (wrn-40-2, resnet34) or "
                             f"torchvision:NAME with NAME one of {choices(TEACHERS)}")
    return ModelDesc("blockswap", text, genotype, num_classes, input_size)


def init_model(desc: ModelDesc, seed: int) -> nn.Module:
    """Build `desc` with its random initialisation drawn from `seed`, global RNG left untouched."""
    with torch_seed(seed):
        return desc.build()


def _module_teacher(module: nn.Module, nodes=None) -> nn.Module:
    """`module` as a teacher whose ``forward_intermediates(x)`` returns ``(logits, {node: tensor})``:
    the module itself if it has that method and no `nodes` are given (a BlockSwap network), else
    `nn.teacher.module_teacher` (the attention points as feature-extraction node names; default:
    the stages ``layer1``.. of a torchvision-style ResNet)."""
    from ..nn.teacher import module_teacher

    if nodes is None and isinstance(module, nn.Module) and callable(getattr(module, "forward_intermediates", None)):
        return module
    if nodes is not None and (isinstance(nodes, str) or not nodes or not all(isinstance(n, str) for n in nodes)):
        raise BlockSwapError(f"teacher_nodes must be a non-empty list of node names, got {nodes!r}")
    return module_teacher(module, nodes)


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over the names, shapes and bytes of `module`'s state: a
    user teacher has no file, so the run record identifies its weights by this."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]
