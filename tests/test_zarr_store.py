"""OME-Zarr I/O: round trips with calibration and provenance, layout, errors, napari reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("ome_zarr")

import zarr  # noqa: E402

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.io.zarr_read import open_zarr_levels, read_zarr  # noqa: E402
from napari_scigen.core.io.zarr_store import slice_chunks  # noqa: E402
from napari_scigen.core.io.zarr_write import (  # noqa: E402
    create_zarr,
    write_zarr,
    write_zarr_slices,
)
from napari_scigen.core.validation import InvalidInputError  # noqa: E402

PROVENANCE = {"engine": "interpolate-flow", "params": {"flow_num_iter": 10}, "seed": None}


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(0, 60000, size=(20, 48, 40), dtype=np.uint16)


def test_round_trip_keeps_voxel_size_units_provenance_and_kind(tmp_path, volume):
    path = write_volume(
        tmp_path / "scan.ome.zarr",
        volume,
        voxel_size=(2.5, 1.25, 1.25),
        unit="mm",
        provenance=PROVENANCE,
        kind="labels",
    )
    read = read_volume(path)
    np.testing.assert_array_equal(read.data, volume)
    assert read.dtype == volume.dtype
    assert read.voxel_size == pytest.approx((2500.0, 1250.0, 1250.0))  # micrometres
    assert read.unit == "um"
    assert read.provenance == PROVENANCE
    assert read.kind == "labels"
    assert read.metadata["ngff_version"] == "0.5"
    # the standard NGFF metadata say the same, so other tools see the calibration
    attributes = json.loads((path / "zarr.json").read_text())["attributes"]
    multiscale = attributes["ome"]["multiscales"][0]
    assert [a["unit"] for a in multiscale["axes"]] == ["millimeter"] * 3
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [2.5, 1.25, 1.25]


def test_uncalibrated_volume_has_unitless_axes_and_reads_as_pixels(tmp_path, volume):
    path = write_volume(tmp_path / "plain.zarr", volume)
    read = read_volume(path)
    assert (read.voxel_size, read.unit) == ((1.0, 1.0, 1.0), "pixel")
    attributes = json.loads((path / "zarr.json").read_text())["attributes"]
    assert all("unit" not in axis for axis in attributes["ome"]["multiscales"][0]["axes"])


def test_chunks_hold_a_few_whole_slices_and_large_slices_are_tiled():
    assert slice_chunks((100, 512, 512), np.uint16) == (8, 512, 512)
    assert slice_chunks((100, 2560, 2560), np.uint16) == (2, 1024, 1024)
    assert slice_chunks((100, 2048, 2048), np.float32) == (1, 1024, 1024)
    assert slice_chunks((3, 64, 64), np.uint8) == (3, 64, 64)
    assert slice_chunks((100, 64, 64), np.uint8, chunk_slices=4) == (4, 64, 64)


def test_levels_halve_y_and_x_and_ngff_04_on_zarr_v2_reads_back(tmp_path, volume):
    import dask.array as da

    lazy = da.from_array(volume, chunks=(3, 48, 40))  # written slab by slab
    path = write_zarr(
        tmp_path / "v2.ome.zarr", lazy, voxel_size=(1, 2, 2), levels=3, ngff_version="0.4"
    )
    assert (path / ".zattrs").is_file()
    levels = open_zarr_levels(path)
    assert [level.shape for level in levels] == [(20, 48, 40), (20, 24, 20), (20, 12, 10)]
    expected = volume[:, :2, :2].astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_array_equal(levels[1][:, 0, 0].compute(), np.rint(expected))
    read = read_zarr(path)
    assert read.metadata["ngff_version"] == "0.4" and read.metadata["levels"] == 3
    np.testing.assert_array_equal(read.data, volume)
    assert read.voxel_size == pytest.approx((1.0, 2.0, 2.0))


def test_reads_are_lazy_when_asked_or_large(tmp_path, volume):
    path = write_volume(tmp_path / "lazy.ome.zarr", volume, voxel_size=(1, 1, 1))
    lazy = read_volume(path, lazy=True)
    assert lazy.lazy and type(lazy.data).__module__.startswith("dask")
    np.testing.assert_array_equal(lazy.data[5].compute(), volume[5])
    assert read_volume(path, lazy_threshold_bytes=1000).lazy
    assert not read_volume(path).lazy


def test_writing_replaces_an_existing_store_only_when_complete(tmp_path, volume):
    path = write_volume(tmp_path / "out.ome.zarr", volume)
    with pytest.raises(InvalidInputError):
        write_volume(path, np.array(["a", "b"]))  # fails before touching the old store
    np.testing.assert_array_equal(read_volume(path).data, volume)
    write_volume(path, volume[:3])
    assert read_volume(path).shape == (3, 48, 40)
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.zarr"]  # no temporary left


def test_region_writes_fill_every_level_and_must_be_chunk_aligned(tmp_path):
    path = create_zarr(tmp_path / "c.ome.zarr", (10, 8, 8), np.uint8, chunk_slices=4, levels=2)
    block = np.full((4, 8, 8), 7, np.uint8)
    write_zarr_slices(path, 4, block)
    levels = open_zarr_levels(path)
    assert levels[0][4:8].compute().min() == 7 and levels[0][:4].compute().max() == 0
    assert levels[1][4:8].compute().min() == 7
    with pytest.raises(InvalidInputError, match="not aligned"):
        write_zarr_slices(path, 2, block)
    with pytest.raises(InvalidInputError, match="do not fit"):
        write_zarr_slices(path, 8, block)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_stores_give_clear_one_line_errors(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InvalidInputError) as error:
        read_volume(tmp_path / "empty.zarr")
    assert "not a zarr store" in _one_line(error)

    group = zarr.open_group(tmp_path / "group.zarr", mode="w")
    group.create_array("raw", shape=(2, 4, 4), dtype="uint8")
    with pytest.raises(InvalidInputError) as error:
        read_volume(tmp_path / "group.zarr")
    assert "without OME-NGFF 'multiscales'" in _one_line(error) and "raw" in str(error.value)

    path = write_volume(tmp_path / "broken.ome.zarr", np.zeros((2, 4, 4), np.uint8))
    import shutil

    shutil.rmtree(path / "0")
    with pytest.raises(InvalidInputError) as error:
        read_volume(path)
    assert "dataset '0'" in _one_line(error)

    zarr.open_array(tmp_path / "f64.zarr", mode="w", shape=(2, 4, 4), dtype="float64")
    with pytest.raises(InvalidInputError) as error:
        read_volume(tmp_path / "f64.zarr")
    assert "unsupported dtype float64" in _one_line(error)

    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.ome.zarr")


def test_time_series_are_refused_and_singleton_axes_dropped(tmp_path):
    from ome_zarr.writer import write_multiscales_metadata

    for name, shape in (("t1.zarr", (1, 1, 3, 4, 4)), ("t5.zarr", (5, 1, 3, 4, 4))):
        group = zarr.open_group(tmp_path / name, mode="w")
        group.create_array("0", shape=shape, dtype="uint16")
        axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        axes += [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
        datasets = [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 3, 2, 2]}],
            }
        ]
        write_multiscales_metadata(group, datasets, axes=axes)
    read = read_volume(tmp_path / "t1.zarr")
    assert read.shape == (3, 4, 4) and read.voxel_size == (3.0, 2.0, 2.0)
    with pytest.raises(InvalidInputError, match="axis 't' has 5 entries"):
        read_volume(tmp_path / "t5.zarr")


def test_convert_tiff_to_ome_zarr_and_back_keeps_calibration(tmp_path, volume, capsys):
    tiff = write_volume(
        tmp_path / "scan.tif", volume, voxel_size=(3.0, 1.5, 1.5), provenance=PROVENANCE
    )
    assert main(["convert", str(tiff), str(tmp_path / "scan.ome.zarr"), "--levels", "2"]) == 0
    store = read_volume(tmp_path / "scan.ome.zarr")
    assert store.voxel_size == pytest.approx((3.0, 1.5, 1.5)) and store.provenance == PROVENANCE
    assert store.metadata["levels"] == 2
    assert main(["convert", str(tmp_path / "scan.ome.zarr"), str(tmp_path / "back.tif")]) == 0
    back = read_volume(tmp_path / "back.tif")
    np.testing.assert_array_equal(back.data, volume)
    assert back.voxel_size == pytest.approx((3.0, 1.5, 1.5)) and back.provenance == PROVENANCE
    assert main(["convert", str(tiff), str(tmp_path / "scan.ome.zarr")]) == 2
    assert "exists" in capsys.readouterr().err


def test_napari_reader_opens_an_ome_zarr_lazily_with_its_levels(tmp_path, volume):
    from napari_scigen._napari._reader import get_reader

    path = write_zarr(
        tmp_path / "scan.ome.zarr", volume, voxel_size=(2, 1, 1), provenance=PROVENANCE, levels=2
    )
    reader = get_reader(str(path))
    assert reader is not None
    [(data, kwargs, layer_type)] = reader(str(path))
    assert layer_type == "image" and kwargs["name"] == "scan"
    assert kwargs["multiscale"] is True and len(data) == 2
    assert all(type(level).__module__.startswith("dask") for level in data)
    assert kwargs["scale"] == pytest.approx((2.0, 1.0, 1.0))
    assert kwargs["metadata"]["provenance"] == PROVENANCE
    np.testing.assert_array_equal(data[0][7].compute(), volume[7])
    single = write_zarr(tmp_path / "one.zarr", volume, levels=1)
    [(data, kwargs, _)] = get_reader(str(single))(str(single))
    assert "multiscale" not in kwargs and type(data).__module__.startswith("dask")
