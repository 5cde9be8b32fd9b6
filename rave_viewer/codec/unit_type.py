"""Which units a .rave stream holds (Gaussians or Scaffold-GS anchors), read from its first 9 bytes.

Every .rave stream starts with the magic b"RAVE", a little-endian u16 format version and a u16 header size.
Versions 1 and 2 hold Gaussians (container.py). From version 3 on, byte 8 is the unit type: 0 Gaussians,
1 anchors (anchors.py writes version 3 with unit type 1). Each reader refuses the other's streams with one line.
"""

from __future__ import annotations

MAGIC = b"RAVE"
UNIT_TYPE_VERSION = 3  # the first format version with a unit-type byte
UNIT_GAUSSIANS, UNIT_ANCHORS = 0, 1
UNIT_NAMES = {UNIT_GAUSSIANS: "gaussians", UNIT_ANCHORS: "anchors"}


def unit_type_of(prefix: bytes) -> str | None:
    """"gaussians", "anchors", or None (not a .rave prefix, too short to tell, or an unknown unit byte)."""
    prefix = bytes(prefix[:9])
    if len(prefix) < 6 or prefix[:4] != MAGIC:
        return None
    if int.from_bytes(prefix[4:6], "little") < UNIT_TYPE_VERSION:
        return "gaussians"
    return UNIT_NAMES.get(prefix[8]) if len(prefix) >= 9 else None


def wrong_unit_message(found: str, reader: str) -> str:
    """The one line a reader of ``reader`` units gives for a stream of ``found`` units."""
    what = {"anchors": "an anchor (Scaffold-GS) .rave stream", "gaussians": "a Gaussian (3DGS) .rave stream"}
    how = {"anchors": "rave_viewer.codec.anchors.decode_anchors", "gaussians": "rave_viewer.codec.decode"}
    return (f"is {what[found]}, not {'an anchor' if reader == 'anchors' else 'a Gaussian'} one: read it with "
            f"{how[found]} (`rave decode` and `rave info` handle both)")
