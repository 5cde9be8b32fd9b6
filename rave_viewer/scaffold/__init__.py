"""Scaffold-GS, the paper's backbone: anchors with features decode neural Gaussians; trained, saved and ranked per anchor."""

from .model import ANCHOR_FIELDS, ScaffoldMLPs, ScaffoldModel, ScaffoldSpec

__all__ = ["ANCHOR_FIELDS", "ScaffoldMLPs", "ScaffoldModel", "ScaffoldSpec"]
