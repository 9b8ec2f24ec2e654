"""The nearest-slice baseline: the engine, and the API, CLI, validation and widget reach it."""

from __future__ import annotations

import numpy as np

from napari_scigen import api
from napari_scigen.cli import main
from napari_scigen.core.io import read_volume, write_volume
from napari_scigen.core.progress import drain
from napari_scigen.workflows.validate import run_validation


def _random_volume(shape=(6, 24, 24), dtype=np.uint16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, size=shape).astype(dtype)


def run_interpolate(volume, method="linear", **request):
    return api.interpolate_job(volume, method=method, **request)


def test_nearest_copies_the_nearer_kept_slice_and_the_lower_one_at_half():
    volume = _random_volume((5, 8, 8), seed=9)
    result = drain(run_interpolate(volume, "nearest", missing=(1, 2, 3)))
    assert np.array_equal(result.data[1], volume[0])
    assert np.array_equal(result.data[2], volume[0])  # t = 0.5: the lower neighbour
    assert np.array_equal(result.data[3], volume[4])
    assert result.provenance["engine"] == "interpolate-nearest"


def test_linear_beats_nearest_on_slices_between_kept_ones():
    z, y, x = np.indices((13, 48, 48))
    blobs = ((y - 14 - 0.8 * z) ** 2 + (x - 20) ** 2) <= 64
    volume = np.where(blobs, 9000, 25000).astype(np.uint16)
    result = drain(run_validation(volume, keep_every=4, methods="linear,nearest", metrics="psnr"))
    rows = {r["method"]: r["value"] for r in result.provenance["table"]}
    assert rows["linear"] > rows["nearest"]


def test_nearest_runs_through_api_cli_and_validate(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4000, (9, 16, 16)).astype(np.uint16)
    result = api.interpolate(volume, method="nearest", missing=[1, 2])
    assert np.array_equal(result.data[1], volume[0]) and np.array_equal(result.data[2], volume[3])
    write_volume(tmp_path / "v.tif", volume, voxel_size=(2.0, 1.0, 1.0))
    out = tmp_path / "n.tif"
    argv = ["interpolate", str(tmp_path / "v.tif"), "--missing", "1,2", "--method", "nearest"]
    assert main([*argv, "-o", str(out), "-q"]) == 0
    written = read_volume(out)
    np.testing.assert_array_equal(written.data, result.data)
    assert written.provenance["engine"] == "interpolate-nearest"
    report = tmp_path / "report"
    argv = ["validate", str(tmp_path / "v.tif"), "--methods", "nearest,linear", "--metrics", "psnr"]
    assert main([*argv, "-o", str(report), "-q"]) == 0
    assert "nearest" in (report / "validation.md").read_text()


def test_nearest_runs_from_the_widget(make_napari_viewer, monkeypatch):
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    viewer = make_napari_viewer()
    image = viewer.add_image(_random_volume((8, 16, 16)), name="rock")
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "nearest"
    widget.missing.value = "4"
    widget.run()
    result = viewer.layers["rock nearest 1"]
    np.testing.assert_array_equal(result.data[4], image.data[3])
    assert result.metadata["provenance"]["engine"] == "interpolate-nearest"
