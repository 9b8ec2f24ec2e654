"""Tooltips read as sentences (issue 21, finding 12): the declared help, the range, the
default and the flag each on their own line, the help capitalised and ended."""

from __future__ import annotations

from napari_scigen._qt._fields import ParamsForm
from napari_scigen.core.masks import RingDetectorParams


def test_parameter_tooltips_put_help_range_and_default_on_their_own_lines(qtbot):
    form = ParamsForm(RingDetectorParams)
    lines = form["margin"].tooltip.split("\n")
    assert lines[0] == (
        "Pixels added on each side of a detected ring radius (1 covers a ring's width)."
    )
    assert lines[1].startswith("Range: ≥ 0")
    assert any(line.startswith("Default: ") and line.endswith(".") for line in lines[2:])
