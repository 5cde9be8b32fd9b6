"""Floor 1: what a scene is (Gaussians, cameras) and how it is read and written."""

from .cameras import Cameras
from .gaussians import Gaussians, num_sh_bases, sh_degree_from_bases

__all__ = ["Cameras", "Gaussians", "num_sh_bases", "sh_degree_from_bases"]
