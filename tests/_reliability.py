"""The bad-input tables' shared parts (tests/test_reliability_*.py).

A row (:class:`Case`) runs one command on a folder of inputs and expects its exit status,
one clear line on stderr with no traceback, and every file under the folder unchanged
afterwards (sha256) with nothing left behind: :func:`run_case`. The folder is the
``inputs`` fixture of ``tests/conftest.py``: a fresh copy of :func:`make_inputs`'s files
per test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


def make_inputs(d: Path) -> None:
    """Every input a row may use (TIFF volumes and a mask, OME-Zarr stores, a slice
    folder named like a store, a link to a store and a folder of the user's own notes)."""
    import tifffile

    from napari_scigen.core.io import write_volume, write_zarr

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4000, (16, 32, 32)).astype(np.uint16)
    write_volume(d / "v.tif", volume)
    mask = np.zeros(volume.shape, np.uint8)
    mask[:, 10:20, 10:20] = 1
    tifffile.imwrite(d / "m.tif", mask)
    write_zarr(d / "s.ome.zarr", volume, levels=1)
    write_zarr(d / "ms.ome.zarr", mask, kind="labels", levels=1)
    (d / "p.zarr").mkdir()
    write_volume(d / "p.zarr" / "scan.tif", volume)
    (d / "out").mkdir()
    (d / "out" / "link.ome.zarr").symlink_to(d / "s.ome.zarr")
    (d / "out" / "notes.ome.zarr").mkdir()
    (d / "out" / "notes.ome.zarr" / "mine.txt").write_text("the user's own notes")


def crafted_tiff(path: Path, side: int, code: int, payload: bytes) -> None:
    """A one-page uint8 TIFF declaring ``side`` x ``side`` pixels in one strip ``payload``
    compressed with TIFF compression ``code``."""
    import struct

    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, code), (262, 3, 1)]
    tags += [(273, 4, 0), (277, 3, 1), (278, 4, side), (279, 4, len(payload))]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(tags)))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    path.write_bytes(bytes(out + struct.pack("<I", 0) + payload))


def copy_inputs(template: Path, d: Path) -> Path:
    """A copy of the ``template`` folder at ``d``, its link pointing into the copy."""
    shutil.copytree(template, d, symlinks=True)
    (d / "out" / "link.ome.zarr").unlink()
    (d / "out" / "link.ome.zarr").symlink_to(d / "s.ome.zarr")
    return d


def tree_state(d: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``d`` (hidden files included)."""
    state = {}
    for path in sorted(d.rglob("*")):
        if path.is_symlink():
            state[str(path.relative_to(d))] = "-> " + os.readlink(path)
        elif path.is_file():
            state[str(path.relative_to(d))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclass(frozen=True)
class Case:
    """One bad input: the command (``{d}`` is the inputs folder) and its one-line answer."""

    id: str
    argv: tuple[str, ...]
    fragment: str
    code: int = 2
    setup: Callable[[Path], None] | None = None
    patch: Callable[[pytest.MonkeyPatch, Path], None] | None = None


def run_case(case: Case, inputs: Path, capfd, monkeypatch) -> None:
    """Run ``case`` on the ``inputs`` folder and check its answer and the unchanged inputs."""
    from napari_scigen.cli import main

    if case.setup is not None:
        case.setup(inputs)
    if case.patch is not None:
        case.patch(monkeypatch, inputs)
    before = tree_state(inputs)
    assert main([a.format(d=inputs) for a in case.argv]) == case.code
    err = capfd.readouterr().err  # the file descriptor: Dask workers write there too
    assert case.fragment in err, err
    assert "Traceback" not in err and "Compute Failed" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-scigen "), err
    assert tree_state(inputs) == before  # inputs unchanged (sha256), nothing left behind
