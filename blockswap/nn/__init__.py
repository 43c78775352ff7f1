"""Modules: layers built from plans, the pre-activation block with its probe, the network with
named stages, and torchvision teachers."""

from .block import Block
from .discover import RESNETS, register_students_space, students_space
from .layers import Layers, make_layer
from .network import BlockSwapNet, build_model, init_weights
from .teacher import TEACHERS, TorchvisionTeacher, build_teacher

__all__ = ["RESNETS", "TEACHERS", "register_students_space", "students_space", "Block", "BlockSwapNet", "Layers", "TorchvisionTeacher", "build_model", "build_teacher",
           "init_weights", "make_layer"]
