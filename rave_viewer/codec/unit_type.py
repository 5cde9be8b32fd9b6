"""Which units a .rave stream holds (Gaussians or Scaffold-GS anchors), read from its first 6 bytes.

Every .rave stream starts with the magic b"RAVE" and a little-endian u16 version field. Its high byte is the
unit type, its low byte the format version of that unit type's layout: 0x00vv Gaussians (container.py,
versions 1-4 so far), 0x01vv anchors (anchors.py). A reader of one unit type refuses the other's streams with
one line, and readers from before anchors existed see a version above theirs ("newer ... upgrade").
"""

from __future__ import annotations

MAGIC = b"RAVE"
UNIT_GAUSSIANS, UNIT_ANCHORS = 0, 1
UNIT_NAMES = {UNIT_GAUSSIANS: "gaussians", UNIT_ANCHORS: "anchors"}


def version_field(unit: int, version: int) -> int:
    """The u16 version field of a stream of ``unit`` units in layout ``version`` (1..255)."""
    return unit << 8 | version


def split_version(field: int) -> tuple[int, int]:
    """(unit type, layout version) of a version field."""
    return field >> 8, field & 0xFF


def unit_type_of(prefix: bytes) -> str | None:
    """"gaussians", "anchors", or None (not a .rave prefix, too short to tell, or an unknown unit type)."""
    prefix = bytes(prefix[:6])
    if len(prefix) < 6 or prefix[:4] != MAGIC:
        return None
    return UNIT_NAMES.get(split_version(int.from_bytes(prefix[4:6], "little"))[0])


def wrong_unit_message(found: str, reader: str) -> str:
    """The one line a reader of ``reader`` units gives for a stream of ``found`` units."""
    what = {"anchors": "an anchor (Scaffold-GS) .rave stream", "gaussians": "a Gaussian (3DGS) .rave stream"}
    how = {"anchors": "rave_viewer.codec.anchors.decode_anchors", "gaussians": "rave_viewer.codec.decode"}
    return (f"is {what[found]}, not {'an anchor' if reader == 'anchors' else 'a Gaussian'} one: read it with "
            f"{how[found]} (`rave decode` and `rave info` handle both)")
