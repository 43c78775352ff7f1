"""The search space as pure values (no `torch.nn`): layer plans and their complexity, block
types, network specs, genotypes, budgets and exact costs."""

from .blocks import (DEFAULT_CANDIDATE_NAMES, BlockType, Family, Groups, candidate_sets, default_candidates,
                     families, parse_block, parse_candidates, register_candidate_set, register_family, split_types)
from . import structured  # noqa: F401  (registers the GL and GS families)
from .budget import Budget, format_count, parse_budget, parse_count
from .complexity import Complexity, Plan, plan_cost
from .costs import BlockCost, CostTable, NetworkCost, block_cost, block_layers, network_cost
from .genotype import Genotype, as_genotype, load_genotype, read_reference_csv, reference_genotype, reference_names
from .networks import BlockSlot, NetworkSpec, network_spec, networks, register_network
from .refs import TeacherRef, is_torchvision, parse_teacher, torchvision_arch

__all__ = [
    "DEFAULT_CANDIDATE_NAMES", "BlockCost", "BlockSlot", "BlockType", "Budget", "Complexity", "CostTable",
    "Family", "Genotype", "Groups", "NetworkCost", "NetworkSpec", "Plan", "as_genotype", "block_cost",
    "block_layers", "candidate_sets", "default_candidates", "families", "format_count", "load_genotype", "network_cost",
    "network_spec", "networks", "parse_block", "parse_budget", "parse_candidates", "parse_count", "plan_cost",
    "read_reference_csv", "reference_genotype", "reference_names", "register_candidate_set", "register_family", "register_network",
    "split_types",
    "TeacherRef", "is_torchvision", "parse_teacher", "torchvision_arch",
]
