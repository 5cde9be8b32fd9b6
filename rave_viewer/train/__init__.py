"""Floor 3: the standard 3DGS trainer (our render API, gsplat's densification strategies, YAML config)."""

from .config import TrainConfig, load_config
from .run import train_folder
from .trainer import TrainResult, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "evaluate", "load_config", "train", "train_folder"]
