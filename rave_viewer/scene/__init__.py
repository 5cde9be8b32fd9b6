"""Floor 1: what a scene is (Gaussians, cameras) and how it is read and written."""

from .gaussians import Gaussians, num_sh_bases, sh_degree_from_bases

__all__ = ["Gaussians", "num_sh_bases", "sh_degree_from_bases"]
