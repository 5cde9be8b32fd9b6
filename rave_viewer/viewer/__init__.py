"""Floor 5: the interactive viewer (viser GUI + nerfview render loop) with a live bitrate slider and exports."""

from .sources import ViewSource, find_demo_scene, open_source

__all__ = ["ViewSource", "find_demo_scene", "open_source"]
