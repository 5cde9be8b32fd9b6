"""RAVE (the paper's method): importance, nested levels, stochastic-level QAT, ranking, selection, .ckpt."""

from .checkpoint import RaveCheckpoint, encode_checkpoint, load_checkpoint, save_checkpoint
from .config import BuildConfig, load_config
from .selection import parse_rate, select_by_count, select_by_psnr, select_by_rate, select_by_rate_exact

__all__ = [
    "BuildConfig",
    "RaveCheckpoint",
    "encode_checkpoint",
    "load_checkpoint",
    "load_config",
    "parse_rate",
    "save_checkpoint",
    "select_by_count",
    "select_by_psnr",
    "select_by_rate",
    "select_by_rate_exact",
]
