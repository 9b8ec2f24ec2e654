"""Learned engines trained once and applied z-chunk by z-chunk equal one process (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest

from learned_tiny import TINY
from napari_scigen import api
from napari_scigen.core.phantoms import make_rock_volume
from napari_scigen.core.progress import drain
from napari_scigen.engines.learned.fitted import (
    inpaint_chunk,
    interpolation_chunk,
    interpolation_sources,
    load_fitted,
    save_fitted,
)
from napari_scigen.engines.learned.params import LearnedInpaintParams, LearnedInterpolateParams

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def volume():
    # deep enough that a chunk's halo is cut inside the volume, thin in-plane (fast)
    return (
        make_rock_volume(shape=(64, 32, 32), seed=2, grain_radius_range=(2, 6), n_bad_detectors=2)
        .volume[:, 4:28, 4:28]
        .copy()
    )


def _chunks(n: int, size: int):
    return [(z, min(n, z + size)) for z in range(0, n, size)]


@pytest.mark.parametrize("geometry", [{"factor": 2}, {"missing": (3, 4, 9, 14, 50, 51, 52)}])
def test_a_fitted_interpolation_shipped_as_safetensors_fills_chunks_as_one_process(
    volume, geometry, tmp_path
):
    from napari_scigen.engines.learned.interpolate import run_learned_interpolation

    params = LearnedInterpolateParams(**TINY, force_learned=True, uncertainty=False)
    reference = api.interpolate(volume, method="learned", params=params, **geometry).data
    fitted = drain(run_learned_interpolation(volume, params, fit_only=True, **geometry))
    save_fitted(fitted, tmp_path)
    assert not list(tmp_path.glob("*.pt")) and (tmp_path / "learned.safetensors").is_file()
    loaded = load_fitted(tmp_path)
    assert loaded.record["filled_with"] == "learned"
    n = volume.shape[0]
    missing, factor = geometry.get("missing"), geometry.get("factor")
    parts = []
    for start, stop in _chunks(reference.shape[0], 40):
        first, last = interpolation_sources(n, missing, factor, start, stop)
        parts.append(
            interpolation_chunk(
                loaded, volume[first:last], source_start=first, n_slices=n, missing=missing,
                factor=factor, start=start, stop=stop, device="cpu",
            )
        )  # fmt: skip
    chunked = np.concatenate(parts)
    # equal within float32 rounding of differently shaped tiles: at most one grey level
    difference = np.abs(chunked.astype(int) - reference.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_a_fitted_inpainting_fills_chunks_bit_identical_to_one_process(volume, tmp_path):
    from napari_scigen.engines.learned.inpaint import run_learned_inpainting

    mask = np.zeros(volume.shape, bool)
    mask[2:60, 8:14, 9:17] = True
    tiny = {k: v for k, v in TINY.items() if k != "validation_slices"}
    params = LearnedInpaintParams(**tiny, force_learned=True, uncertainty=False)
    reference = api.inpaint(volume, mask, method="learned", params=params).data
    fitted = drain(run_learned_inpainting(volume, mask, params, fit_only=True))
    save_fitted(fitted, tmp_path)
    loaded = load_fitted(tmp_path)
    n, halo = volume.shape[0], 16
    parts = []
    for start, stop in _chunks(n, 20):
        low, high = max(0, start - halo), min(n, stop + halo)
        out = inpaint_chunk(
            loaded, volume[low:high], mask[low:high], source_start=low, n_slices=n,
            slices=range(start - low, stop - low), device="cpu",
        )  # fmt: skip
        parts.append(out[start - low : stop - low])
    np.testing.assert_array_equal(np.concatenate(parts), reference)


class CountingVolume:
    """A lazy volume that counts the voxels read through it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.voxels_read = self.largest_read = 0

    def __getitem__(self, key):
        part = self.data[key]
        self.voxels_read += part.size
        self.largest_read = max(self.largest_read, part.size)
        return part


def test_a_large_lazy_volume_is_fitted_on_a_bounded_sample_never_read_whole(volume, monkeypatch):
    from napari_scigen.engines.learned import bounded
    from napari_scigen.engines.learned.interpolate import run_learned_interpolation

    monkeypatch.setattr(bounded, "MAX_FIT_VOXELS", 20 * 16 * 16)
    monkeypatch.setattr(bounded, "MAX_FIT_SIDE", 16)
    params = LearnedInterpolateParams(**TINY, force_learned=True, uncertainty=False)
    lazy = CountingVolume(volume)
    value_range = (float(volume.min()), float(volume.max()))
    fitted = drain(
        run_learned_interpolation(lazy, params, factor=2, fit_only=True, value_range=value_range)
    )
    assert lazy.voxels_read == 20 * 16 * 16 < volume.size
    sample = fitted.record["extra"]["fit_sample"]
    assert sample["z"][1] - sample["z"][0] == 20 and sample["of_shape"] == list(volume.shape)
    # one process fits on the same seeded sample, then fills the whole volume
    whole = api.interpolate(volume, method="learned", params=params, factor=2)
    assert whole.provenance["extra"]["fit_sample"] == sample
    chunked = interpolation_chunk(
        fitted, volume, source_start=0, n_slices=64, missing=None, factor=2, start=0,
        stop=whole.data.shape[0], device="cpu",
    )  # fmt: skip
    np.testing.assert_array_equal(chunked, whole.data)


def test_chunks_of_a_fit_that_fell_back_fill_with_the_classical_method_as_one_process(volume):
    from napari_scigen.engines.learned.fitted import Fitted

    value_range = [float(volume.min()), float(volume.max())]
    fallback = Fitted("interpolate", None, {"filled_with": "linear", "output_range": value_range})
    missing = (3, 4, 9, 14, 50, 51, 52)
    reference = api.interpolate(volume, method="linear", missing=missing).data
    parts = []
    for start, stop in _chunks(64, 10):
        first, last = interpolation_sources(64, missing, None, start, stop)
        parts.append(
            interpolation_chunk(
                fallback, volume[first:last], source_start=first, n_slices=64, missing=missing,
                factor=None, start=start, stop=stop,
            )
        )  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(parts), reference)
    mask = np.zeros(volume.shape, bool)
    mask[5:40, 8:14, 9:17] = True
    biharmonic = Fitted("inpaint", None, {"filled_with": "biharmonic", "output_range": value_range})
    reference = api.inpaint(volume, mask, method="biharmonic").data
    parts = [
        inpaint_chunk(
            biharmonic, volume[start:stop], mask[start:stop], source_start=start, n_slices=64,
            slices=range(stop - start),
        )
        for start, stop in _chunks(64, 16)
    ]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(parts), reference)


def test_a_large_lazy_volume_is_inpainted_from_a_bounded_sample_never_read_whole(
    volume, monkeypatch
):
    from napari_scigen.engines.learned import bounded
    from napari_scigen.engines.learned.inpaint import run_learned_inpainting

    monkeypatch.setattr(bounded, "MAX_FIT_VOXELS", 24 * 16 * 16)
    monkeypatch.setattr(bounded, "MAX_FIT_SIDE", 16)
    mask = np.zeros(volume.shape, bool)
    mask[5:60, 8:14, 9:17] = True
    tiny = {k: v for k, v in TINY.items() if k != "validation_slices"}
    params = LearnedInpaintParams(**tiny, force_learned=True, uncertainty=False)
    lazy, lazy_mask = CountingVolume(volume), CountingVolume(mask)
    value_range = (float(volume.min()), float(volume.max()))
    fitted = drain(
        run_learned_inpainting(lazy, lazy_mask, params, fit_only=True, value_range=value_range)
    )
    assert lazy.voxels_read == 24 * 16 * 16 < volume.size
    # the mask is read slab by slab (to draw the sample's centre), never whole at once
    assert lazy_mask.largest_read == bounded.MASK_SLAB * 24 * 24 < mask.size
    whole = api.inpaint(volume, mask, method="learned", params=params)
    assert whole.provenance["extra"]["fit_sample"] == fitted.record["extra"]["fit_sample"]
    filled = inpaint_chunk(
        fitted, volume, mask, source_start=0, n_slices=64, slices=range(64), device="cpu"
    )
    np.testing.assert_array_equal(filled, whole.data)


def test_the_masked_voxel_drawn_slab_by_slab_is_the_one_of_the_flat_index():
    from napari_scigen.engines.learned.bounded import _nth_nonzero

    mask = np.random.default_rng(0).random((40, 7, 9)) < 0.05
    flat = np.flatnonzero(mask)
    for n in (0, 1, flat.size // 2, flat.size - 1):
        assert _nth_nonzero(mask, n) == np.unravel_index(flat[n], mask.shape)


def test_scans_up_to_about_256_cubed_are_fitted_whole_larger_ones_on_a_budget():
    from napari_scigen.engines.learned.bounded import MAX_FIT_VOXELS, fit_window, inpaint_window

    for shape in [(150, 150, 150), (200, 200, 200), (100, 256, 256), (256, 256, 256)]:
        assert fit_window(shape, None, 2, seed=0) is None
        assert inpaint_window(shape, np.ones(shape[1:], bool), seed=0) is None
    window = fit_window((937, 2560, 2560), tuple(range(1, 936, 2)), None, seed=0)
    sizes = [s.stop - s.start for s in window]
    assert sizes[1:] == [512, 512] and 64 <= sizes[0] <= 66
    assert sizes[0] * 512 * 512 <= MAX_FIT_VOXELS + 2 * 512 * 512
    assert window[0].start % 2 == 0 and (window[0].stop - 1) % 2 == 0  # starts/ends on kept


@pytest.mark.parametrize("geometry", [{"factor": 2}, {"missing": (3, 4, 9, 14, 50, 51, 52)}])
def test_chunks_read_their_grid_rows_from_the_input_with_the_bits_of_a_whole_float32_grid(
    volume, geometry, monkeypatch
):
    from napari_scigen.engines.learned import geometry as grid_module
    from napari_scigen.engines.learned.interpolate import run_learned_interpolation

    params = LearnedInterpolateParams(**TINY, force_learned=True, uncertainty=False)
    fitted = drain(run_learned_interpolation(volume, params, fit_only=True, **geometry))
    n, (missing, factor) = volume.shape[0], (geometry.get("missing"), geometry.get("factor"))

    def fill(start, stop):
        first, last = interpolation_sources(n, missing, factor, start, stop)
        spread = np.zeros((stop - start, *volume.shape[1:]), np.float32)
        data = interpolation_chunk(
            fitted, volume[first:last], source_start=first, n_slices=n, missing=missing,
            factor=factor, start=start, stop=stop, device="cpu", uncertainty=spread,
        )  # fmt: skip
        return data, spread

    def dense(slices, targets, n_rows, low, high):  # the float32 grid chunks used to build
        grid = np.zeros((n_rows, *slices.shape[1:]), np.float32)
        for source, target in targets.items():
            grid[target] = grid_module.grid_units(slices[source], low, high)
        return grid

    n_out = n * 2 - 1 if factor else n
    chunks = [(0, 30), (30, n_out - 10), (n_out - 10, n_out)]  # the last reads from z > 0
    assert interpolation_sources(n, missing, factor, *chunks[-1])[0] > 0
    lazily = [fill(start, stop) for start, stop in chunks]
    monkeypatch.setattr(grid_module, "KnownRows", dense)
    whole = [fill(start, stop) for start, stop in chunks]
    for (data, spread), (reference, reference_spread) in zip(lazily, whole, strict=True):
        assert np.array_equal(data, reference) and np.array_equal(spread, reference_spread)
    assert any(spread.any() for _, spread in lazily)  # the network filled something


def test_default_batch_chunks_are_the_tallest_filled_in_one_tile(monkeypatch):
    # a chunk a little taller than a tile's core pays an extra, nearly empty slab; a
    # shorter one more halo: at 600 x 256^2 the former 192-slice default computed 14 %
    # more network pixels than one process, this default (288) 2 % more
    from napari_scigen.engines.learned import inference, tiles
    from napari_scigen.engines.learned.interpolate import run_learned_interpolation
    from napari_scigen.workflows._batch_job import fitted_chunk_slices

    deep = make_rock_volume(
        shape=(300, 32, 32), seed=4, grain_radius_range=(2, 6), n_bad_detectors=2
    )
    deep = deep.volume[:, 4:28, 4:28].copy()
    params = LearnedInterpolateParams(**TINY, force_learned=True, uncertainty=False)
    fitted = drain(run_learned_interpolation(deep, params, factor=2, fit_only=True))
    n, n_out = deep.shape[0], 2 * deep.shape[0] - 1
    # tiles of 180 rows x 24 pixels: cores of 92 rows, one process fills 7 slabs
    monkeypatch.setitem(tiles.BATCH_PIXELS, "cpu", 24 * 180)
    pixels = []
    real_apply = inference.apply

    def counted(network, inputs, *args, **kwargs):
        pixels.append(inputs.shape[0] * inputs.shape[-2] * inputs.shape[-1])
        return real_apply(network, inputs, *args, **kwargs)

    monkeypatch.setattr(inference, "apply", counted)

    def cost(size: int) -> int:
        pixels.clear()
        for start, stop in _chunks(n_out, size):
            first, last = interpolation_sources(n, None, 2, start, stop)
            interpolation_chunk(
                fitted, deep[first:last], source_start=first, n_slices=n, missing=None,
                factor=2, start=start, stop=stop, device="cpu",
            )  # fmt: skip
        return sum(pixels)

    default = fitted_chunk_slices((n_out, 24, 24), 16)
    assert default == 80  # the 92-row core, in whole stored chunks of 16 slices
    chunked = cost(default)
    assert chunked < min(cost(default - 16), cost(default + 16))
    assert chunked <= 1.1 * cost(n_out)  # near one process (80 of the 92 rows: 7 % more)


def test_tiles_side_by_side_fill_the_bits_of_tiles_in_turn_in_one_process_and_in_chunks(
    volume, monkeypatch
):
    import threading

    from napari_scigen.engines.learned import inference
    from napari_scigen.engines.learned.interpolate import run_learned_interpolation

    monkeypatch.setattr(inference, "concurrent_calls", lambda device, threads=None: (2, 1))
    names, real_apply = [], inference.apply

    def recording_apply(*args, **kwargs):
        names.append(threading.current_thread().name)
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(inference, "apply", recording_apply)

    def side_by_side() -> bool:
        ran = any(name.startswith("scigen-tiles") for name in names)
        names.clear()
        return ran

    base = {**TINY, "force_learned": True}
    in_turn = api.interpolate(
        volume, method="learned", params=LearnedInterpolateParams(**base), factor=2
    )
    assert not side_by_side()  # off by default
    params = LearnedInterpolateParams(**base, concurrent_tiles=True)
    concurrent = api.interpolate(volume, method="learned", params=params, factor=2)
    assert side_by_side()
    np.testing.assert_array_equal(concurrent.data, in_turn.data)
    np.testing.assert_array_equal(concurrent.images["uncertainty"], in_turn.images["uncertainty"])
    # a batch job's chunks take it from the fitted record
    fitted = drain(run_learned_interpolation(volume, params, fit_only=True, factor=2))
    assert fitted.record["concurrent_tiles"] is True
    names.clear()
    n = volume.shape[0]
    first, last = interpolation_sources(n, None, 2, 40, 80)
    chunk = interpolation_chunk(
        fitted, volume[first:last], source_start=first, n_slices=n, missing=None, factor=2,
        start=40, stop=80, device="cpu",
    )  # fmt: skip
    assert side_by_side()
    difference = np.abs(chunk.astype(int) - in_turn.data[40:80].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # as any chunk
