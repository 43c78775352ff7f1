"""Training teachers and students (paper Sec. 3.2, 5, 6): one loop, named recipes, attention
transfer and KD, exact resume, data parallel, checkpoints and run records."""

from .checkpoint import CHECKPOINT, CHECKPOINT_NAME, RUN_RECORD, load_checkpoint, load_model
from .classify import train_model
from .config import RECIPES, RUNTIME_FIELDS, SCHEDULES, TrainConfig, recipe, run_seeds
from .distill import at_loss, attention_map, kd_loss
from .distributed import Distributed, setup_distributed
from .evaluate import evaluate
from .loop import TRAIN_TASKS, fit
from .models import KINDS, ModelDesc, init_model, parse_model
from .state import TrainState

__all__ = ["CHECKPOINT", "CHECKPOINT_NAME", "KINDS", "RECIPES", "RUNTIME_FIELDS", "RUN_RECORD", "SCHEDULES",
           "TRAIN_TASKS", "Distributed", "ModelDesc", "TrainConfig", "TrainState", "at_loss", "attention_map",
           "evaluate", "fit", "init_model", "kd_loss", "load_checkpoint", "load_model", "parse_model", "recipe",
           "run_seeds", "setup_distributed", "train_model"]
