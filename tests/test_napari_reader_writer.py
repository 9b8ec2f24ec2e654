"""Tests for the npe2 reader and writers (plain functions, no viewer needed)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_scigen._napari import _reader
from napari_scigen._napari._reader import get_reader, read_layers
from napari_scigen._napari._writer import write_image, write_labels
from napari_scigen.core.io import read_volume, write_volume
from napari_scigen.core.validation import InvalidInputError

PROVENANCE = {"engine": "inpaint-biharmonic", "params": {"radius": 2}}


def image_meta(scale=(2.0, 0.5, 0.5), **metadata) -> dict:
    """The layer attributes napari hands to a writer (the parts we use)."""
    return {"name": "scan", "scale": list(scale), "metadata": metadata, "rgb": False}


@pytest.mark.parametrize("name", ["image.png", "volume.npy", "table.csv", "noextension"])
def test_reader_declines_non_tiff_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"x")
    assert get_reader(str(path)) is None


def test_reader_declines_folder_without_tiffs_and_mixed_lists(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert get_reader(str(tmp_path)) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "a.png")]) is None
    assert get_reader([]) is None


def test_reader_accepts_tiff_files_folders_and_lists_of_tiffs(tmp_path):
    tifffile.imwrite(tmp_path / "s1.tif", np.zeros((3, 4), np.uint8))
    tifffile.imwrite(tmp_path / "s2.TIFF", np.zeros((3, 4), np.uint8))
    assert callable(get_reader(str(tmp_path / "s1.tif")))
    assert callable(get_reader(str(tmp_path / "s2.TIFF")))
    assert callable(get_reader(str(tmp_path)))
    assert callable(get_reader([str(tmp_path / "s1.tif"), str(tmp_path / "s2.TIFF")]))


def test_reader_returns_image_layer_with_scale_and_provenance(tmp_path):
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = write_volume(
        tmp_path / "scan_01.tif", data, voxel_size=(3.0, 1.5, 1.5), provenance=PROVENANCE
    )
    layers = get_reader(str(path))(str(path))
    assert len(layers) == 1
    layer_data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    np.testing.assert_array_equal(layer_data, data)
    assert kwargs["name"] == "scan_01"
    assert kwargs["scale"] == pytest.approx((3.0, 1.5, 1.5))
    assert kwargs["metadata"] == {
        "provenance": PROVENANCE,
        "source": str(path),
        "voxel_unit": "um",
    }


def test_reader_opens_labels_files_as_labels_layers(tmp_path):
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 1:3, 1:3] = 5
    path = write_volume(tmp_path / "mask.tif", labels, kind="labels")
    layer_data, kwargs, layer_type = read_layers(str(path))[0]
    assert layer_type == "labels"
    np.testing.assert_array_equal(layer_data, labels)


def test_reader_splits_channels_with_channel_axis(tmp_path):
    path = tmp_path / "two_channels.tif"
    data = np.zeros((3, 2, 4, 5), np.uint8)  # Z C Y X
    data[:, 1] = 9
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"},
    )
    layer_data, kwargs, layer_type = read_layers(str(path))[0]
    assert layer_type == "image"
    assert kwargs["channel_axis"] == 0
    assert layer_data.shape == (2, 3, 4, 5)
    assert kwargs["scale"] == pytest.approx((1.5, 0.5, 0.5))
    assert kwargs["name"] == ["two_channels ch0", "two_channels ch1"]
    assert int(layer_data[1].max()) == 9 and int(layer_data[0].max()) == 0


def test_reader_passes_lazy_data_through_unchanged(tmp_path, monkeypatch):
    data = np.arange(4 * 6 * 7, dtype=np.uint16).reshape(4, 6, 7)
    path = tmp_path / "lazy.tif"
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    monkeypatch.setattr(_reader, "read_volume", functools.partial(read_volume, lazy=True))
    layer_data, _, _ = read_layers(str(path))[0]
    assert hasattr(layer_data, "dask")  # a dask array, not materialised
    np.testing.assert_array_equal(layer_data[2].compute(), data[2])


def test_reader_names_folder_layers_after_the_folder(tmp_path):
    folder = tmp_path / "sample_scan"
    folder.mkdir()
    for index in range(3):
        tifffile.imwrite(folder / f"z{index}.tif", np.full((3, 4), index, np.uint8))
    layer_data, kwargs, _ = read_layers(str(folder))[0]
    assert kwargs["name"] == "sample_scan"
    assert layer_data.shape == (3, 3, 4)


def test_writer_reader_round_trip_keeps_data_scale_and_provenance(tmp_path):
    data = np.random.default_rng(0).random((4, 6, 5)).astype(np.float32)
    meta = image_meta(provenance=PROVENANCE, voxel_unit="um")
    written = write_image(str(tmp_path / "result.tif"), data, meta)
    assert written == [str(tmp_path / "result.tif")]
    layer_data, kwargs, layer_type = read_layers(written[0])[0]
    np.testing.assert_array_equal(layer_data, data)
    assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))
    assert kwargs["metadata"]["provenance"] == PROVENANCE
    assert layer_type == "image"


def test_writer_appends_tif_extension(tmp_path):
    written = write_image(str(tmp_path / "result"), np.zeros((3, 4), np.uint8), image_meta((1, 1)))
    assert written == [str(tmp_path / "result.tif")]
    assert (tmp_path / "result.tif").is_file()


def test_labels_writer_round_trip_gives_labels_layer(tmp_path):
    labels = np.zeros((3, 5, 5), np.int32)  # napari's usual labels dtype
    labels[1, 1:4, 1:4] = 300
    written = write_labels(str(tmp_path / "mask.tiff"), labels, image_meta(provenance=PROVENANCE))
    layer_data, kwargs, layer_type = read_layers(written[0])[0]
    assert layer_type == "labels"
    assert layer_data.dtype == np.uint16
    np.testing.assert_array_equal(layer_data, labels)
    assert kwargs["metadata"]["provenance"] == PROVENANCE


def test_writer_uses_voxel_unit_from_layer_metadata(tmp_path):
    written = write_image(
        str(tmp_path / "mm.tif"),
        np.zeros((2, 3, 4), np.uint8),
        image_meta((0.01, 0.002, 0.002), voxel_unit="mm"),
    )
    volume = read_volume(written[0])
    assert volume.unit == "um"
    assert volume.voxel_size == pytest.approx((10.0, 2.0, 2.0))


def test_writer_without_unit_writes_um_for_a_set_scale_and_pixel_for_unit_scale(tmp_path):
    scaled = write_image(
        str(tmp_path / "a.tif"), np.zeros((2, 3, 4), np.uint8), image_meta((3, 1, 1))
    )
    plain = write_image(
        str(tmp_path / "b.tif"), np.zeros((2, 3, 4), np.uint8), image_meta((1, 1, 1))
    )
    assert read_volume(scaled[0]).unit == "um"
    assert read_volume(plain[0]).unit == "pixel"


def test_writer_reads_unit_from_napari_layer_state(tmp_path):
    layers = pytest.importorskip("napari.layers")
    try:
        layer = layers.Image(np.zeros((2, 3, 4), np.uint16), scale=(4, 2, 2), units="nm")
    except TypeError:
        pytest.skip("this napari has no layer units")
    written = write_image(str(tmp_path / "nm.tif"), layer.data, layer._get_state())
    volume = read_volume(written[0])
    assert volume.voxel_size == pytest.approx((0.004, 0.002, 0.002))


def test_writer_refuses_rgb_layers(tmp_path):
    meta = image_meta((1, 1)) | {"rgb": True}
    with pytest.raises(InvalidInputError, match="RGB"):
        write_image(str(tmp_path / "rgb.tif"), np.zeros((4, 5, 3), np.uint8), meta)
    assert list(tmp_path.iterdir()) == []


def test_writer_writes_full_resolution_of_multiscale_data(tmp_path):
    levels = [np.ones((4, 8, 8), np.uint8), np.ones((4, 4, 4), np.uint8)]
    meta = image_meta() | {"multiscale": True}
    written = write_image(str(tmp_path / "ms.tif"), levels, meta)
    assert read_volume(written[0]).shape == (4, 8, 8)


def test_the_plugin_writers_are_named_for_what_they_keep():
    """napari's save dialog lists '<plugin> <writer>'; ours must be told apart from builtins."""
    import yaml

    manifest = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "src/napari_scigen/napari.yaml").read_text()
    )
    titles = [
        f"{manifest['display_name']} {writer['display_name']}"
        for writer in manifest["contributions"]["writers"]
    ]
    assert titles == [
        "napari-scigen microCT TIFF (voxel size + provenance)",
        "napari-scigen microCT labels TIFF (voxel size + provenance)",
    ]
