"""A learned batch job trained once writes its uncertainty image chunk by chunk (issue 19).

The chunks run in this process through the worker's own functions (``fit_model``,
``compute_chunk``), as a Dask worker runs them, without starting a cluster.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr", minversion="3")

from learned_tiny import TINY  # noqa: E402
from napari_scigen import api  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.workflows import _batch_worker  # noqa: E402
from napari_scigen.workflows._batch_store import prepare_store  # noqa: E402
from napari_scigen.workflows._batch_worker import (  # noqa: E402
    compute_chunk,
    fit_model,
    uncertainty_store,
    wants_uncertainty,
)
from napari_scigen.workflows.batch import BatchRequest, plan_batch  # noqa: E402


@pytest.fixture(scope="module")
def rock(tmp_path_factory):
    volume = (
        make_rock_volume(shape=(64, 32, 32), seed=2, grain_radius_range=(2, 6), n_bad_detectors=2)
        .volume[:, 4:28, 4:28]
        .copy()
    )
    path = write_volume(tmp_path_factory.mktemp("unc") / "rock.ome.zarr", volume)
    return volume, str(path)


def _run_in_process(request: BatchRequest, volume: np.ndarray, reads=None):
    """Plan, fit once and compute every chunk as the workers would; the job.

    ``reads`` (a dict) receives per chunk the input slice ranges it read.
    """
    job = prepare_store(plan_batch(request))
    job = replace(job, value_range=(float(volume.min()), float(volume.max())))
    assert job.fit_once and len(job.chunks) >= 3
    assert fit_model(job)["filled_with"] == "learned"
    read = _batch_worker._read_slices
    for chunk in job.chunks:
        ranges = [] if reads is None else reads.setdefault(chunk.index, [])

        def counted(path, start, stop, labels=False, ranges=ranges, **options):
            if path == request.input:
                ranges.append((start, stop))
            return read(path, start, stop, labels=labels, **options)

        _batch_worker._read_slices = counted
        try:
            assert compute_chunk(job, chunk.index)["status"] == "computed"
        finally:
            _batch_worker._read_slices = read
    return job


def test_chunked_learned_interpolation_writes_an_uncertainty_image_equal_to_one_process(
    rock, tmp_path
):
    volume, path = rock
    params = {**TINY, "force_learned": True, "uncertainty": True}
    request = BatchRequest(
        "interpolate", "learned", path, str(tmp_path / "x2.ome.zarr"), params=params,
        factor=2, chunk_slices=40,
    )  # fmt: skip
    job = _run_in_process(request, volume)
    reference = api.interpolate(volume, method="learned", factor=2, **params)
    chunked = read_volume(job.store)
    spread = read_volume(uncertainty_store(job.store))
    expected = reference.images["uncertainty"]
    assert spread.data.dtype == np.float32 and spread.shape == expected.shape == chunked.shape
    assert chunked.provenance["extra"]["uncertainty_image"] == "uncertainty.ome.zarr"
    assert spread.provenance["engine"] == chunked.provenance["engine"]
    assert spread.provenance["output"].startswith("uncertainty")
    # the intensities within one grey level (float32 rounding of differently shaped
    # tiles); the spread, not rounded, within that rounding in data units (0 measured here)
    difference = np.abs(chunked.data.astype(int) - reference.data.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    np.testing.assert_allclose(np.asarray(spread.data), expected, rtol=0, atol=1e-3)
    kept = np.arange(0, expected.shape[0], 2)
    assert not np.asarray(spread.data)[kept].any() and expected[1::2].max() > 0
    # no image when the job does not ask for one
    quiet = replace(request, params={**params, "uncertainty": False})
    assert not wants_uncertainty(plan_batch(replace(quiet, output=str(tmp_path / "q.ome.zarr"))))


def test_chunked_learned_inpainting_writes_an_uncertainty_image_bit_identical_to_one_process(
    rock, tmp_path
):
    volume, path = rock
    mask = np.zeros(volume.shape, np.uint8)
    mask[20:60, 8:14, 9:17] = 1  # the first chunk has nothing to fill: its halo is not read
    mask_path = write_volume(tmp_path / "mask.ome.zarr", mask, kind="labels")
    tiny = {k: v for k, v in TINY.items() if k != "validation_slices"}
    params = {**tiny, "force_learned": True, "uncertainty": True}
    request = BatchRequest(
        "inpaint", "learned", path, str(tmp_path / "filled.ome.zarr"), params=params,
        mask=str(mask_path), chunk_slices=16,
    )  # fmt: skip
    reads = {}
    job = _run_in_process(request, volume, reads)
    assert reads[0] == [(0, 16)] and reads[1] == [(0, 48)]  # no halo without a masked slice
    reference = api.inpaint(volume, mask.astype(bool), method="learned", **params)
    spread = np.asarray(read_volume(uncertainty_store(job.store)).data)
    np.testing.assert_array_equal(np.asarray(read_volume(job.store).data), reference.data)
    np.testing.assert_array_equal(spread, reference.images["uncertainty"])
    assert spread[mask.astype(bool)].max() > 0 and not spread[~mask.astype(bool)].any()


def test_a_chunk_of_kept_slices_only_gets_zero_uncertainty_and_the_gaps_equal_one_process(
    rock, tmp_path
):
    volume, path = rock
    params = {**TINY, "force_learned": True, "uncertainty": True}
    missing = (40, 41, 55)
    request = BatchRequest(
        "interpolate", "learned", path, str(tmp_path / "gaps.ome.zarr"), params=params,
        missing=missing, chunk_slices=32,
    )  # fmt: skip
    job = prepare_store(plan_batch(request))
    job = replace(job, value_range=(float(volume.min()), float(volume.max())))
    assert [c.copy for c in job.chunks] == [True, False] and job.store_chunk_slices < 32
    fit_model(job)
    for chunk in job.chunks:
        compute_chunk(job, chunk.index)
    reference = api.interpolate(volume, method="learned", missing=missing, **params)
    spread = np.asarray(read_volume(uncertainty_store(job.store)).data)
    np.testing.assert_allclose(spread, reference.images["uncertainty"], rtol=0, atol=1e-3)
    assert sorted(set(np.nonzero(spread)[0])) == list(missing)
    np.testing.assert_array_equal(np.asarray(read_volume(job.store).data), reference.data)
