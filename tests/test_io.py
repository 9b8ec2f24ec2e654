"""Tests for napari_scigen.core.io: TIFF reading/writing, voxel size, provenance, laziness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_scigen.core import io
from napari_scigen.core.io import (
    METADATA_KEY,
    Volume,
    list_tiff_slices,
    natural_sort_key,
    read_volume,
    write_volume,
)
from napari_scigen.core.validation import InvalidInputError

DTYPES = [np.uint8, np.uint16, np.int16, np.float32]
VOXEL = (2.5, 0.7, 0.7)  # anisotropic Z, micrometres
SHAPE = (6, 24, 20)


def make_volume(dtype, shape=SHAPE, seed=0) -> np.ndarray:
    """Deterministic test volume using most of the dtype's range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.normal(size=shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def ij_resolution(size_um: float) -> tuple[float, float]:
    return (1.0 / size_um, 1.0 / size_um)


# --------------------------------------------------------------------------- layouts


def write_ours(folder: Path, data: np.ndarray) -> Path:
    return write_volume(folder / "ours.tif", data, voxel_size=VOXEL, unit="um")


def write_multipage(folder: Path, data: np.ndarray) -> Path:
    """Plain multi-page TIFF (not ImageJ): only X/Y calibration is expressible."""
    path = folder / "multipage.tif"
    pixels_per_cm = 1e4 / VOXEL[2]
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        resolution=(pixels_per_cm, pixels_per_cm),
        resolutionunit="CENTIMETER",
    )
    return path


def write_imagej_zyx(folder: Path, data: np.ndarray) -> Path:
    path = folder / "hyperstack_zyx.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=ij_resolution(VOXEL[2]),
        metadata={"axes": "ZYX", "spacing": VOXEL[0], "unit": "um"},
    )
    return path


def write_imagej_tzcyx(folder: Path, data: np.ndarray) -> Path:
    """Hyperstack with singleton T and C axes around Z."""
    path = folder / "hyperstack_tzcyx.tif"
    tifffile.imwrite(
        path,
        data[np.newaxis, :, np.newaxis],
        imagej=True,
        resolution=ij_resolution(VOXEL[2]),
        metadata={"axes": "TZCYX", "spacing": VOXEL[0], "unit": "micron"},
    )
    return path


def write_slice_folder(folder: Path, data: np.ndarray) -> Path:
    """One ImageJ TIFF per slice; names chosen so that plain sorting would misorder them."""
    target = folder / "slices"
    target.mkdir()
    for index, plane in enumerate(data):
        tifffile.imwrite(
            target / f"slice{index * 5}.tif",
            plane,
            imagej=True,
            resolution=ij_resolution(VOXEL[2]),
            metadata={"axes": "YX", "spacing": VOXEL[0], "unit": "um"},
        )
    return target


LAYOUTS = {
    "ours": (write_ours, VOXEL),
    "multipage": (write_multipage, (VOXEL[2], VOXEL[1], VOXEL[2])),  # Z assumed = X
    "imagej_zyx": (write_imagej_zyx, VOXEL),
    "imagej_tzcyx": (write_imagej_tzcyx, VOXEL),
    "folder": (write_slice_folder, VOXEL),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_preserves_voxels_dtype_and_voxel_size(tmp_path, dtype, layout):
    data = make_volume(dtype)
    writer, expected_voxel = LAYOUTS[layout]
    path = writer(tmp_path, data)

    volume = read_volume(path)

    assert isinstance(volume.data, np.ndarray)
    assert volume.data.dtype == np.dtype(dtype)
    assert volume.data.shape == SHAPE
    np.testing.assert_array_equal(volume.data, data)
    assert volume.unit == "um"
    assert volume.voxel_size == pytest.approx(expected_voxel, rel=1e-5)
    assert volume.metadata["axes"] == "ZYX"
    assert volume.channel_axis is None
    assert volume.kind == "image"
    assert volume.lazy is False
    assert volume.source == str(path)


def test_plain_multipage_without_z_spacing_assumes_isotropic_voxels(tmp_path):
    path = write_multipage(tmp_path, make_volume(np.uint16))
    volume = read_volume(path)
    assert volume.metadata["voxel_size_z_assumed"] is True
    assert volume.voxel_size[0] == pytest.approx(volume.voxel_size[2])


def test_our_writer_keeps_anisotropic_z_for_int16_which_imagej_cannot_store(tmp_path):
    path = write_ours(tmp_path, make_volume(np.int16))
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
        assert tif.pages[0].tags["ResolutionUnit"].value == 3  # centimetre, standard TIFF
    volume = read_volume(path)
    assert volume.voxel_size == pytest.approx(VOXEL)
    assert "voxel_size_z_assumed" not in volume.metadata


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32], ids=lambda d: np.dtype(d).name)
def test_writer_makes_imagej_files_that_state_the_voxel_size_for_fiji(tmp_path, dtype):
    path = write_ours(tmp_path, make_volume(dtype))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        imagej = tif.imagej_metadata
        assert imagej["spacing"] == pytest.approx(VOXEL[0])
        assert imagej["unit"] == "um"
        assert imagej["slices"] == SHAPE[0]
        assert 1.0 / tif.pages[0].resolution[0] == pytest.approx(VOXEL[2], rel=1e-6)
        assert json.loads(imagej["Info"])[METADATA_KEY]["voxel_size"] == list(VOXEL)


def test_provenance_and_labels_kind_round_trip(tmp_path):
    provenance = {"engine": "inpaint-biharmonic", "params": {"radius": 3}, "seed": [1, 2]}
    labels = np.zeros((3, 8, 9), dtype=np.uint8)
    labels[1, 2:5, 3:6] = 7
    path = write_volume(
        tmp_path / "mask.tif", labels, voxel_size=(1, 2, 2), provenance=provenance, kind="labels"
    )
    volume = read_volume(path)
    assert volume.provenance == provenance
    assert volume.kind == "labels"
    np.testing.assert_array_equal(volume.data, labels)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_provenance_round_trips_for_every_dtype(tmp_path, dtype):
    provenance = {"engine": "diffedit", "model": "tiny", "created": "2024-01-01T00:00:00+00:00"}
    path = write_volume(
        tmp_path / "p.tif", make_volume(dtype), voxel_size=VOXEL, provenance=provenance
    )
    assert read_volume(path).provenance == provenance


def test_image_without_provenance_reads_none(tmp_path):
    path = write_volume(tmp_path / "p.tif", make_volume(np.uint8), voxel_size=VOXEL)
    assert read_volume(path).provenance is None


def test_large_labels_are_stored_losslessly_as_uint32(tmp_path):
    labels = np.zeros((2, 5, 5), dtype=np.int64)
    labels[0, 0, 0] = 70_000
    labels[1, 4, 4] = 3
    volume = read_volume(write_volume(tmp_path / "l.tif", labels, kind="labels"))
    assert volume.dtype == np.uint32
    assert volume.kind == "labels"
    np.testing.assert_array_equal(volume.data, labels)


def test_integer_image_with_unsupported_dtype_is_stored_in_smallest_lossless_dtype(tmp_path):
    data = np.arange(2 * 4 * 5, dtype=np.int64).reshape(2, 4, 5) * 10  # 0..390
    volume = read_volume(write_volume(tmp_path / "i.tif", data))
    assert volume.dtype == np.uint16
    np.testing.assert_array_equal(volume.data, data)
    assert any("int64 stored as uint16" in note for note in volume.metadata["notes"])


def test_writer_refuses_integer_image_values_no_supported_dtype_can_hold(tmp_path):
    data = np.array([[[0, 1 << 20]]], dtype=np.int32)
    with pytest.raises(InvalidInputError, match="losslessly"):
        write_volume(tmp_path / "i.tif", data)
    assert list(tmp_path.iterdir()) == []


def test_float64_is_stored_as_float32_and_the_conversion_is_noted(tmp_path):
    data = np.linspace(-1, 1, 2 * 3 * 4).reshape(2, 3, 4)
    volume = read_volume(write_volume(tmp_path / "f.tif", data))
    assert volume.dtype == np.float32
    np.testing.assert_allclose(volume.data, data, rtol=1e-6)
    assert any("float64 stored as float32" in note for note in volume.metadata["notes"])


def test_two_dimensional_slice_round_trips_with_two_voxel_sizes(tmp_path):
    data = make_volume(np.uint16, shape=(12, 10))
    volume = read_volume(write_volume(tmp_path / "s.tif", data, voxel_size=(0.5, 0.25)))
    assert volume.shape == (12, 10)
    assert volume.voxel_size == pytest.approx((0.5, 0.25))
    np.testing.assert_array_equal(volume.data, data)


def test_writing_without_voxel_size_gives_an_uncalibrated_file(tmp_path):
    volume = read_volume(write_volume(tmp_path / "n.tif", make_volume(np.uint8)))
    assert volume.voxel_size == (1.0, 1.0, 1.0)
    assert volume.unit == "pixel"


def test_units_other_than_micrometres_are_converted_on_read(tmp_path):
    volume = read_volume(
        write_volume(
            tmp_path / "mm.tif", make_volume(np.uint8), voxel_size=(0.004, 0.002, 0.002), unit="mm"
        )
    )
    assert volume.unit == "um"
    assert volume.voxel_size == pytest.approx((4.0, 2.0, 2.0))


@pytest.mark.parametrize(
    ("unit", "micrometres"), [("nm", 0.5e-3), ("mm", 500.0), ("\\u00B5m", 0.5), ("micron", 0.5)]
)
def test_imagej_units_are_converted_to_micrometres(tmp_path, unit, micrometres):
    path = tmp_path / "u.tif"
    tifffile.imwrite(
        path,
        make_volume(np.uint8, shape=(2, 4, 4)),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 0.5, "unit": unit},
    )
    volume = read_volume(path)
    assert volume.unit == "um"
    assert volume.voxel_size == pytest.approx((micrometres,) * 3)


def test_unknown_unit_is_kept_unconverted(tmp_path):
    path = tmp_path / "u.tif"
    tifffile.imwrite(
        path,
        make_volume(np.uint8, shape=(2, 4, 4)),
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZYX", "spacing": 3.0, "unit": "furlong"},
    )
    volume = read_volume(path)
    assert volume.unit == "furlong"
    assert volume.voxel_size == pytest.approx((3.0, 0.25, 0.25))


def test_72_dpi_screen_resolution_is_not_taken_as_a_pixel_size(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, make_volume(np.uint8), resolution=(72, 72), resolutionunit="INCH")
    volume = read_volume(path)
    assert volume.unit == "pixel"
    assert volume.voxel_size == (1.0, 1.0, 1.0)


def test_file_recalibrated_elsewhere_uses_the_tiff_tags_over_our_record(tmp_path):
    record = {"format": 1, "kind": "image", "voxel_size": [9.0, 9.0, 9.0], "unit": "um"}
    path = tmp_path / "recal.tif"
    tifffile.imwrite(
        path,
        make_volume(np.uint16),
        imagej=True,
        resolution=ij_resolution(VOXEL[2]),
        metadata={
            "axes": "ZYX",
            "spacing": VOXEL[0],
            "unit": "um",
            "Info": json.dumps({METADATA_KEY: record}),
        },
    )
    volume = read_volume(path)
    assert volume.voxel_size == pytest.approx(VOXEL, rel=1e-5)
    assert any("differs" in note for note in volume.metadata["notes"])


# --------------------------------------------------------------------------- hyperstacks


def test_hyperstack_channel_axis_becomes_first_axis(tmp_path):
    data = make_volume(np.uint16, shape=(1, 4, 2, 6, 5))  # T Z C Y X
    path = tmp_path / "channels.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=ij_resolution(0.5),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um"},
    )
    volume = read_volume(path)
    assert volume.shape == (2, 4, 6, 5)
    assert volume.channel_axis == 0
    assert volume.metadata["axes"] == "CZYX"
    assert volume.voxel_size == pytest.approx((1.0, 1.5, 0.5, 0.5))
    np.testing.assert_array_equal(volume.data, data[0].transpose(1, 0, 2, 3))


def test_hyperstack_channels_read_lazily_match_eager(tmp_path):
    data = make_volume(np.uint8, shape=(3, 2, 6, 5))  # Z C Y X
    path = tmp_path / "channels.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    eager = read_volume(path)
    lazy = read_volume(path, lazy=True)
    assert lazy.lazy
    np.testing.assert_array_equal(np.asarray(lazy.data), eager.data)


def test_imagej_3d_written_without_axes_reads_as_slices_not_channels(tmp_path):
    data = make_volume(np.uint8, shape=(7, 6, 5))
    path = tmp_path / "noaxes.tif"
    tifffile.imwrite(path, data, imagej=True)  # tifffile labels this 'CYX'
    volume = read_volume(path)
    assert volume.metadata["source_axes"] == "CYX"
    assert volume.metadata["axes"] == "ZYX"
    assert volume.channel_axis is None
    np.testing.assert_array_equal(volume.data, data)
    assert any("read as 7 slices" in note for note in volume.metadata["notes"])


@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_imagej_layout_of_files_over_4_gib_is_read(tmp_path, lazy):
    """ImageJ stores > 4 GiB stacks with one IFD and contiguous data; so does our writer."""
    data = make_volume(np.uint16)
    path = tmp_path / "one_ifd.tif"
    tifffile.imwrite(path, data, imagej=True, truncate=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
    volume = read_volume(path, lazy=lazy)
    np.testing.assert_array_equal(np.asarray(volume.data), data)


def test_hyperstack_with_time_and_z_is_refused_with_explanation(tmp_path):
    path = tmp_path / "tz.tif"
    tifffile.imwrite(
        path, make_volume(np.uint8, shape=(2, 3, 4, 5)), imagej=True, metadata={"axes": "TZYX"}
    )
    with pytest.raises(InvalidInputError, match=r"tz\.tif.*T=2, Z=3"):
        read_volume(path)


def test_unsupported_dtype_is_refused_with_its_name(tmp_path):
    path = tmp_path / "f64.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 4), dtype=np.float64), photometric="minisblack")
    with pytest.raises(InvalidInputError, match=r"f64\.tif.*float64"):
        read_volume(path)


# --------------------------------------------------------------------------- folders


def test_natural_sort_key_orders_numbers_numerically():
    names = ["slice10.tif", "slice2.tif", "Slice1.tif", "slice002b.tif"]
    assert sorted(names, key=natural_sort_key) == [
        "Slice1.tif",
        "slice2.tif",
        "slice002b.tif",
        "slice10.tif",
    ]


def test_folder_slices_are_stacked_in_natural_order_and_hidden_files_ignored(tmp_path):
    for number in (10, 2, 1):
        tifffile.imwrite(tmp_path / f"slice{number}.tif", np.full((4, 5), number, np.uint8))
    (tmp_path / "._slice3.tif").write_bytes(b"macOS resource fork junk")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_tiff_slices(tmp_path)] == [
        "slice1.tif",
        "slice2.tif",
        "slice10.tif",
    ]
    volume = read_volume(tmp_path)
    assert volume.data[:, 0, 0].tolist() == [1, 2, 10]
    assert volume.source == str(tmp_path)


def test_list_of_slice_files_is_stacked_in_the_given_order(tmp_path):
    paths = []
    for number in (3, 1, 2):
        path = tmp_path / f"s{number}.tif"
        tifffile.imwrite(path, np.full((4, 5), number, np.uint16))
        paths.append(path)
    volume = read_volume([str(p) for p in paths])
    assert volume.data[:, 0, 0].tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    "odd", [np.zeros((4, 6), np.uint8), np.zeros((4, 5), np.uint16)], ids=["shape", "dtype"]
)
def test_folder_with_mismatched_slice_names_the_odd_file(tmp_path, odd):
    for number in (1, 2, 3):
        tifffile.imwrite(tmp_path / f"slice{number}.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(tmp_path / "slice2.tif", odd)
    with pytest.raises(InvalidInputError, match=r"slice2\.tif.*slice1\.tif"):
        read_volume(tmp_path)


def test_folder_with_a_multi_page_file_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a1.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(tmp_path / "a2.tif", np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(InvalidInputError, match=r"a2\.tif.*one grayscale slice per file"):
        read_volume(tmp_path)


def test_folder_without_tiffs_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="no .tif"):
        read_volume(tmp_path)


# --------------------------------------------------------------------------- broken files


def test_missing_file_raises_file_not_found_with_the_path(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_volume(missing)


def test_random_bytes_named_tif_give_a_clear_error(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidInputError, match=r"garbage\.tif.*not a TIFF"):
        read_volume(path)


def test_png_renamed_to_tif_gives_a_clear_error(tmp_path):
    path = tmp_path / "image.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(InvalidInputError, match="another image format"):
        read_volume(path)


def _truncate(path: Path) -> Path:
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    return path


@pytest.mark.parametrize(
    "write",
    [
        lambda p, d: write_volume(p, d, voxel_size=VOXEL),
        lambda p, d: tifffile.imwrite(p, d),
        lambda p, d: tifffile.imwrite(p, d, compression="zlib"),
        lambda p, d: tifffile.imwrite(p, d, imagej=True, metadata={"axes": "ZYX"}),
    ],
    ids=["ours", "multipage", "compressed", "imagej"],
)
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_tiff_is_reported_not_silently_shortened(tmp_path, write, lazy):
    path = tmp_path / "cut.tif"
    write(path, make_volume(np.uint16, shape=(8, 32, 32)))
    _truncate(path)
    with pytest.raises(InvalidInputError, match=r"cut\.tif.*truncated"):
        read_volume(path, lazy=lazy)


def test_truncated_slice_in_folder_is_named(tmp_path):
    for number in (1, 2, 3):
        tifffile.imwrite(tmp_path / f"s{number}.tif", make_volume(np.uint16, shape=(32, 32)))
    _truncate(tmp_path / "s2.tif")
    with pytest.raises(InvalidInputError, match=r"s2\.tif.*truncated"):
        read_volume(tmp_path)


# --------------------------------------------------------------------------- lazy


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_volume_above_threshold_opens_lazily_with_the_same_slices(tmp_path, compression):
    data = make_volume(np.uint16)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
    eager = read_volume(path)
    lazy = read_volume(path, lazy_threshold_bytes=1024)
    assert lazy.lazy is True
    assert not (isinstance(lazy.data, np.ndarray) and not isinstance(lazy.data, np.memmap))
    assert lazy.metadata["storage"] == ("memmap" if compression is None else "dask")
    np.testing.assert_array_equal(np.asarray(lazy.data[0]), eager.data[0])
    np.testing.assert_array_equal(np.asarray(lazy.data[3, 5:9, 2:4]), eager.data[3, 5:9, 2:4])
    np.testing.assert_array_equal(np.asarray(lazy.data), eager.data)


def test_lazy_dask_volume_computes_correctly_with_threads(tmp_path):
    data = make_volume(np.float32, shape=(12, 16, 16))
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    lazy = read_volume(path, lazy=True)
    assert lazy.data.chunks[0] == (1,) * 12
    total = lazy.data.sum(dtype=np.float64).compute(scheduler="threads", num_workers=4)
    assert total == pytest.approx(data.sum(dtype=np.float64), rel=1e-9)


def test_folder_opens_lazily_one_file_per_chunk(tmp_path):
    data = write_slice_folder(tmp_path, make_volume(np.int16))
    eager = read_volume(data)
    lazy = read_volume(data, lazy=True)
    assert lazy.lazy and lazy.metadata["storage"] == "dask"
    assert lazy.data.chunks[0] == (1,) * SHAPE[0]
    np.testing.assert_array_equal(lazy.data[2].compute(), eager.data[2])
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)


def test_lazy_false_reads_into_memory_whatever_the_threshold(tmp_path):
    path = write_ours(tmp_path, make_volume(np.uint8))
    volume = read_volume(path, lazy=False, lazy_threshold_bytes=0)
    assert type(volume.data) is np.ndarray
    assert volume.lazy is False


# --------------------------------------------------------------------------- writing


def _no_temporary_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") or p.suffix == ".tmp" for p in folder.iterdir())


def test_write_replaces_existing_file_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out.tif"
    write_volume(target, make_volume(np.uint8, seed=1))
    new = make_volume(np.uint8, seed=2)
    assert write_volume(target, new) == target
    np.testing.assert_array_equal(read_volume(target).data, new)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_failed_write_keeps_existing_file_intact_and_removes_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.tif"
    old = make_volume(np.uint16, seed=3)
    write_volume(target, old, voxel_size=VOXEL)
    before = target.read_bytes()

    def failing_write(self, *args, **kwargs):
        self._fh.write(b"partial data that must never reach the target")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_volume(target, make_volume(np.uint16, seed=4), voxel_size=VOXEL)

    assert target.read_bytes() == before
    assert _no_temporary_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_dask_input_is_written_slab_by_slab(tmp_path, monkeypatch):
    da = pytest.importorskip("dask.array")
    data = make_volume(np.uint16, shape=(10, 8, 8))
    plane_bytes = 8 * 8 * 2
    monkeypatch.setattr(io, "_SLAB_BYTES", 3 * plane_bytes)
    computed: list[int] = []
    lazy = da.from_array(data, chunks=(2, 8, 8)).map_blocks(
        lambda block: computed.append(block.shape[0]) or block, dtype=data.dtype
    )
    path = write_volume(tmp_path / "dask.tif", lazy, voxel_size=VOXEL)
    np.testing.assert_array_equal(read_volume(path).data, data)
    assert sum(computed) == 10  # every chunk computed exactly once


def test_memmap_input_is_never_requested_whole(tmp_path, monkeypatch):
    class RecordingArray:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.ndim = (
                array,
                array.shape,
                array.dtype,
                array.ndim,
            )
            self.requested: list[int] = []

        def __getitem__(self, key):
            part = self.array[key]
            self.requested.append(part.shape[0])
            return part

    data = make_volume(np.float32, shape=(9, 8, 8))
    monkeypatch.setattr(io, "_SLAB_BYTES", 2 * 8 * 8 * 4)
    recording = RecordingArray(data)
    path = write_volume(tmp_path / "r.tif", recording)
    np.testing.assert_array_equal(read_volume(path).data, data)
    assert max(recording.requested) <= 2
    assert sum(recording.requested) == 9


def test_writer_frees_each_slab_before_computing_the_next(tmp_path, monkeypatch):
    """Peak memory stays at about one slab: no earlier slab may still be alive."""
    import weakref

    class SlabSource:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, 3
            self.slabs: list = []
            self.alive_when_requested: list[int] = []

        def __getitem__(self, key):
            self.alive_when_requested.append(sum(ref() is not None for ref in self.slabs))
            part = self.array[key].copy()
            self.slabs.append(weakref.ref(part))
            return part

    data = make_volume(np.uint16, shape=(12, 8, 8))
    monkeypatch.setattr(io, "_SLAB_BYTES", 3 * 8 * 8 * 2)
    source = SlabSource(data)
    np.testing.assert_array_equal(read_volume(write_volume(tmp_path / "s.tif", source)).data, data)
    assert len(source.slabs) == 4
    assert source.alive_when_requested == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "data", [np.array([["a", "b"]]), np.zeros((2, 2), dtype=complex)], ids=["str", "complex"]
)
def test_writer_refuses_non_numeric_data(tmp_path, data):
    with pytest.raises(InvalidInputError, match="cannot write"):
        write_volume(tmp_path / "x.tif", data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voxel_size": (1.0, 1.0)}, "voxel_size has 2 values"),
        ({"voxel_size": (1.0, 0.0, 1.0)}, "positive"),
        ({"kind": "mask"}, "kind"),
    ],
)
def test_writer_refuses_bad_options(tmp_path, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        write_volume(tmp_path / "x.tif", np.zeros((2, 3, 4), np.uint8), **kwargs)


def test_writer_refuses_four_dimensional_data_and_non_tiff_names(tmp_path):
    with pytest.raises(InvalidInputError, match="one channel or time point"):
        write_volume(tmp_path / "x.tif", np.zeros((2, 2, 3, 4), np.uint8))
    with pytest.raises(InvalidInputError, match=r"\.tif or \.tiff"):
        write_volume(tmp_path / "x.png", np.zeros((3, 4), np.uint8))


def test_writer_does_not_modify_its_input(tmp_path):
    data = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    copy = data.copy()
    write_volume(tmp_path / "x.tif", data)
    np.testing.assert_array_equal(data, copy)
    assert data.dtype == np.int64


def test_volume_reports_shape_dtype_and_channel_axis():
    volume = Volume(data=np.zeros((2, 3, 4), np.uint8), voxel_size=(1.0, 1.0, 1.0))
    assert volume.shape == (2, 3, 4)
    assert volume.dtype == np.uint8
    assert volume.channel_axis is None


# --------------------------------------------------------------------------- real data


@pytest.fixture
def shared_data() -> Path:
    folder = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"shared microCT data not found at {folder}")
    return folder


@pytest.mark.shared_data
def test_reads_real_fibre_composite_volume(shared_data):
    volume = read_volume(shared_data / "fiber_composite_qim3d" / "volume.tif")
    assert volume.shape == (150, 150, 150)
    assert volume.dtype == np.uint8
    assert volume.unit == "pixel"  # SOURCE.md: voxel size not stated
    assert volume.voxel_size == (1.0, 1.0, 1.0)
    assert int(volume.data.min()) == 25 and int(volume.data.max()) == 223


@pytest.mark.shared_data
def test_reads_real_sandstone_slices_with_their_pixel_size(shared_data):
    path = shared_data / "slices2d_sandstone_versa_bnsreenu" / "slices.tif"
    volume = read_volume(path)
    assert volume.shape == (10, 1024, 996)
    assert volume.dtype == np.uint8
    assert volume.unit == "um"
    assert volume.voxel_size == pytest.approx((2.2315, 2.2315, 2.2315), rel=1e-4)
    lazy = read_volume(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(lazy.data[5]), volume.data[5])


# ---------------------------------------------------------------------------------------
# issue 12: round trips, series, memory, temporary files, strict records
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
def test_a_one_slice_volume_keeps_its_z_axis_and_z_voxel_size(tmp_path, dtype):
    path = write_volume(tmp_path / "one.tif", np.ones((1, 8, 9), dtype), voxel_size=(7.0, 2.0, 2.5))
    volume = read_volume(path)
    assert volume.shape == (1, 8, 9) and volume.metadata["axes"] == "ZYX"
    assert volume.voxel_size == pytest.approx((7.0, 2.0, 2.5))
    assert read_volume(path, lazy=True).shape == (1, 8, 9)


def test_a_single_page_from_elsewhere_stays_a_2d_slice(tmp_path):
    tifffile.imwrite(tmp_path / "slice.tif", np.ones((8, 9), np.uint16))
    assert read_volume(tmp_path / "slice.tif").shape == (8, 9)


def test_appended_series_read_as_one_stack_and_mismatched_ones_named(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.uint16).reshape(6, 5, 4)
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, data[:2], photometric="minisblack")
    tifffile.imwrite(path, data[2:], photometric="minisblack", append=True)
    assert np.array_equal(read_volume(path).data, data)
    assert np.array_equal(read_volume(path, series=0).data, data[:2])
    tifffile.imwrite(path, data[:2, :3], photometric="minisblack", append=True)
    with pytest.raises(InvalidInputError, match=r"series 2: \(2, 3, 4\).*with series=N"):
        read_volume(path)
    assert read_volume(path, series=2).shape == (2, 3, 4)


def test_reads_that_do_not_fit_into_memory_are_refused_before_allocating(tmp_path, monkeypatch):
    path = write_volume(tmp_path / "v.tif", np.zeros((4, 64, 64), np.uint16))
    monkeypatch.setattr(io.memory, "available_memory_bytes", lambda: 20_000)
    with pytest.raises(io.NotEnoughMemoryError, match="needs about 32.0 KiB"):
        read_volume(path)
    volume = read_volume(path, lazy=True)  # one 8 KiB slice at a time fits
    assert volume.lazy and volume.data[0].shape == (64, 64)
    monkeypatch.setattr(io.memory, "available_memory_bytes", lambda: 1_000)
    with pytest.raises(io.NotEnoughMemoryError, match="one slice of v.tif"):
        read_volume(path, lazy=True)


def test_available_memory_is_known_on_linux_and_respects_an_address_space_limit(monkeypatch):
    import resource

    total = io.available_memory_bytes()
    assert total is None or total > 0
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1, resource.RLIM_INFINITY))
    assert io.available_memory_bytes() in (0, None)


def test_stale_temporary_files_of_the_target_are_removed_by_the_next_write(tmp_path):
    import os
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # fmt: skip
    stale = tmp_path / f".out.tif.{int(dead.stdout)}.0123456789ab.tmp"
    legacy = tmp_path / ".out.tif.0123456789ab.tmp"  # an earlier version's name
    alive = tmp_path / f".out.tif.{os.getpid()}.ba9876543210.tmp"  # a write running now
    other = tmp_path / ".other.tif.0123456789ab.tmp"
    for path in (stale, legacy, alive, other):
        path.write_bytes(b"left behind")
    old = time.time() - 2 * 3600
    os.utime(legacy, (old, old))
    os.utime(other, (old, old))
    write_volume(tmp_path / "out.tif", np.zeros((4, 4), np.uint8))
    assert not stale.exists() and not legacy.exists()
    assert alive.exists() and other.exists()


def test_the_record_is_strict_json_even_with_non_finite_provenance(tmp_path):
    provenance = {"score": float("nan"), "range": [float("inf"), -float("inf"), 1.5]}
    path = write_volume(tmp_path / "v.tif", np.zeros((4, 4), np.uint8), provenance=provenance)
    with tifffile.TiffFile(path) as tif:
        text = tif.imagej_metadata["Info"]
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in the record"))
    assert read_volume(path).provenance == {"score": None, "range": ["inf", "-inf", 1.5]}


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "uint32", "int64"])
def test_masks_of_any_integer_or_bool_dtype_are_read_with_labels_true(tmp_path, dtype):
    mask = np.zeros((3, 6, 6), dtype)
    mask[:, 2:4, 2:4] = 1
    tifffile.imwrite(tmp_path / "m.tif", mask, photometric="minisblack")
    with pytest.raises(InvalidInputError, match="unsupported dtype"):
        read_volume(tmp_path / "m.tif")
    read = read_volume(tmp_path / "m.tif", labels=True)
    assert np.array_equal(read.data != 0, mask != 0)


def test_the_angstrom_unit_is_a_known_length(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 4), np.uint8), imagej=True, resolution=(0.5, 0.5), metadata={"unit": "\\u00C5", "spacing": 3.0, "axes": "ZYX"})  # fmt: skip
    volume = read_volume(path)
    assert volume.unit == "um" and volume.voxel_size == pytest.approx((3e-4, 2e-4, 2e-4))
