"""Assertion helpers shared by the scene tests."""

from __future__ import annotations

import pytest

from rave_viewer.errors import RaveError


def raises(match_path, fn, *a, **kw) -> str:
    """Call fn, expect a one-line RaveError naming ``match_path``; return the message."""
    with pytest.raises(RaveError) as ei:
        fn(*a, **kw)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(match_path) in msg, msg
    return msg
