"""rave_viewer: RAVE rate-adaptive encoding for 3D Gaussian Splatting, and its viewer."""

__version__ = "0.1.0"
