"""Evaluation: RD curves of RAVE checkpoints and baselines, Bjøntegaard comparisons, CSV/JSON/PNG reports."""

from .compare import BDResult, anchor_sag, bd, bd_pairs, bd_table_text, curve_table_text, smoothness
from .rd import LPIPS_NOTE, RDCurve, decoded_gaussians, evaluate_checkpoint, evaluate_models, evaluate_prefixes, rate_grid
from .report import load_report, plot_curves, write_report

__all__ = [
    "BDResult", "LPIPS_NOTE", "anchor_sag", "RDCurve", "bd", "bd_pairs", "bd_table_text", "curve_table_text",
    "decoded_gaussians", "evaluate_checkpoint", "evaluate_models", "evaluate_prefixes", "load_report",
    "plot_curves", "rate_grid", "smoothness", "write_report",
]
