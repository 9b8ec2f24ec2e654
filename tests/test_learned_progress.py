"""The learned fill reports its voxel rate and time left on the command line (issue 19)."""

from __future__ import annotations

import re

import pytest

from napari_scigen.cli import main
from napari_scigen.core.io import write_volume
from napari_scigen.core.phantoms import make_rock_volume

pytest.importorskip("torch")

#: A tiny learned run: random start, small crops and network, two steps, one thread.
TINY_FLAGS = [
    "--method", "learned", "--force-learned", "--train-steps", "2", "--init", "scratch",
    "--crop-size", "16", "--base-channels", "8", "--batch-size", "2", "--threads", "1",
    "--device", "cpu", "--validation-slices", "2",
]  # fmt: skip


def test_the_cli_prints_the_learned_fills_voxel_rate_and_time_left(tmp_path, capsys):
    volume = make_rock_volume(
        shape=(12, 32, 32), seed=1, grain_radius_range=(2, 6), n_bad_detectors=2
    ).volume
    path = write_volume(tmp_path / "rock.tif", volume)
    out = tmp_path / "x2.tif"
    assert main(["interpolate", str(path), "--factor", "2", *TINY_FLAGS, "-o", str(out)]) == 0
    lines = capsys.readouterr().err.splitlines()
    fill = [line for line in lines if "Mvoxel/s" in line]
    assert fill, lines
    for line in fill:
        assert re.search(r"\d+\.\d\d Mvoxel/s, about \d+ s left", line), line
