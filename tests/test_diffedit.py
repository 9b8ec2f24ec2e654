"""DiffEdit engine on tiny offline Stable Diffusion pipelines (CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen import api  # noqa: E402
from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError, missing_hub_model_message  # noqa: E402
from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.sd.diffedit import (  # noqa: E402
    MASK_LABEL,
    DiffEditParams,
    run_diffedit,
    run_generate_mask,
)
from tiny_sd import TINY_RESOLUTION, tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def params(models):
    return DiffEditParams(
        model=str(models.sd),
        source_prompt="rock",
        prompt="a pore",
        steps=4,
        strength=0.5,
        guidance_scale=5.0,
        resolution=TINY_RESOLUTION,
        context=8,
        feather=2,
        device="cpu",
        seed=7,
    )


def _volume(depth=3, shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < min(shape) / 4
    slices = [(disk * 25000 + 8000 + rng.normal(0, 800, shape)).clip(0) for _ in range(depth)]
    return np.stack(slices).astype(np.uint16)


def _box_mask(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, dtype=bool)
    mask[..., y0:y1, x0:x1] = True
    return mask


def test_diffedit_edits_painted_mask_and_keeps_outside_bit_identical(params):
    volume = _volume()
    before = volume.copy()
    mask = _box_mask(volume.shape, 20, 40, 22, 44)
    events = []
    result = drain(run_diffedit(volume, mask, params), on_progress=events.append)
    np.testing.assert_array_equal(volume, before)  # input untouched
    assert result.data.dtype == np.uint16 and result.data.shape == volume.shape
    np.testing.assert_array_equal(result.data[~mask], volume[~mask])
    changed = result.data[mask] != volume[mask]
    assert changed.mean() > 0.5
    np.testing.assert_array_equal(result.labels[MASK_LABEL], mask.astype(np.uint8))
    step_messages = [e.message for e in events if "step" in e.message]
    assert len(step_messages) == 3 * 4  # one call per slice: 2 inversion + 2 edit steps each
    assert events[-1].step == events[-1].total


def test_diffedit_16bit_round_trip_stays_in_input_range(params):
    volume = _volume(depth=1)[0]
    mask = _box_mask(volume.shape, 10, 50, 10, 50)
    result = drain(run_diffedit(volume, mask, params))
    assert result.data.dtype == np.uint16 and result.data.shape == volume.shape
    window = result.provenance["extra"]["window"]
    inside = result.data[mask]
    assert volume.min() <= inside.min() and inside.max() <= volume.max()
    assert window["low"] >= volume.min() and window["high"] <= volume.max()
    np.testing.assert_array_equal(result.data[~mask], volume[~mask])


def test_diffedit_provenance_records_model_seeds_window_and_tiles(params, models):
    volume = _volume(depth=4)
    mask = _box_mask(volume.shape, 20, 40, 22, 44)
    result = api.edit(volume, mask, params=params, slices=[1, 3])
    record = result.provenance
    assert record["engine"] == "diffedit"
    assert record["task"] == "edit" and record["method"] == "diffedit"
    assert record["model"] == str(models.sd)
    assert record["params"]["prompt"] == "a pore"
    assert record["seed"] == [8, 10]  # seed + z
    assert record["extra"]["seeds"] == {"1": 8, "3": 10}
    assert record["source"]["slices"] == [1, 3]
    assert set(record["extra"]["tiles"]) == {"1", "3"}
    assert record["extra"]["window"]["dtype"] == "uint16"
    assert record["extra"]["mask_source"] == "painted"
    assert "diffusers" in record["software"] and "torch" in record["software"]
    # unselected slices are copied unchanged
    np.testing.assert_array_equal(result.data[[0, 2]], volume[[0, 2]])


def test_diffedit_large_slice_uses_model_size_crops_never_downscaling(params):
    rng = np.random.default_rng(4)
    slice_ = rng.integers(2000, 50000, (150, 170)).astype(np.uint16)
    mask = np.zeros(slice_.shape, dtype=bool)
    mask[5:15, 6:20] = True  # top-left corner
    mask[130:145, 150:165] = True  # bottom-right corner: needs a second crop
    result = drain(run_diffedit(slice_, mask, params))
    crops = result.provenance["extra"]["tiles"]["0"]
    assert len(crops) == 2
    for y0, x0, y1, x1 in crops:
        assert (y1 - y0, x1 - x0) == (TINY_RESOLUTION, TINY_RESOLUTION)
    assert result.data.shape == slice_.shape
    np.testing.assert_array_equal(result.data[~mask], slice_[~mask])
    assert (result.data[mask] != slice_[mask]).mean() > 0.5


def test_diffedit_small_slice_is_padded_then_cropped_back(params):
    rng = np.random.default_rng(5)
    slice_ = rng.normal(0.5, 0.1, (40, 52)).astype(np.float32)
    mask = np.zeros(slice_.shape, dtype=bool)
    mask[10:30, 15:35] = True
    result = drain(run_diffedit(slice_, mask, params))
    assert result.data.shape == (40, 52) and result.data.dtype == np.float32
    assert result.provenance["extra"]["padding"]["0"] == [[12, 12], [6, 6]]
    np.testing.assert_array_equal(result.data[~mask], slice_[~mask])
    assert not np.allclose(result.data[mask], slice_[mask])


def test_diffedit_slice_result_is_identical_alone_and_in_batch(params):
    volume = _volume(depth=3, seed=2)
    mask = _box_mask(volume.shape, 16, 48, 16, 48)
    batched = drain(run_diffedit(volume, mask, dataclasses.replace(params, batch_size=3)))
    alone = drain(run_diffedit(volume, mask, params, slices=[1]))
    np.testing.assert_array_equal(alone.data[1], batched.data[1])
    # different slices got different noise (seed + z), so outputs differ
    assert not np.array_equal(batched.data[0][mask[0]], batched.data[2][mask[2]])


def test_diffedit_shared_2d_mask_applies_to_every_slice(params):
    volume = _volume(depth=2)
    mask2d = _box_mask(volume.shape[1:], 24, 40, 24, 40)
    result = drain(run_diffedit(volume, mask2d, params))
    for z in range(2):
        np.testing.assert_array_equal(result.data[z][~mask2d], volume[z][~mask2d])
        assert (result.data[z][mask2d] != volume[z][mask2d]).any()


def test_generate_mask_returns_pixel_resolution_labels(params):
    volume = _volume(depth=2)
    loose = drain(run_generate_mask(volume, dataclasses.replace(params, mask_threshold=1.0)))
    strict = drain(run_generate_mask(volume, dataclasses.replace(params, mask_threshold=3.0)))
    labels = loose.labels[MASK_LABEL]
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1} and labels.any()
    # thresholding the same difference map harder can only remove pixels
    assert np.all(strict.data <= loose.data) and strict.data.sum() < loose.data.sum()
    # the mask comes from the latent grid: constant on 8x8 blocks of the 64x64 slice
    blocks = labels[0].reshape(8, 8, 8, 8)
    assert np.all(blocks.min(axis=(1, 3)) == blocks.max(axis=(1, 3)))
    assert loose.provenance["engine"] == "diffedit-mask"
    assert loose.provenance["extra"]["seeds"] == {"0": 7, "1": 8}


def test_diffedit_without_mask_uses_generated_mask(params):
    volume = _volume(depth=1)
    loose = dataclasses.replace(params, mask_threshold=1.0)
    generated = api.make_mask(volume, params=params, mask_threshold=1.0)
    assert generated.provenance["task"] == "mask"
    np.testing.assert_array_equal(generated.data, drain(run_generate_mask(volume, loose)).data)
    result = api.edit(volume, None, params=loose)
    np.testing.assert_array_equal(result.labels[MASK_LABEL], generated.data)
    outside = generated.data == 0
    np.testing.assert_array_equal(result.data[outside], volume[outside])
    assert result.provenance["extra"]["mask_source"] == "generate_mask"


def test_diffedit_loads_saved_diffedit_pipeline_with_inverse_scheduler(params, models):
    volume = _volume(depth=1)[0]
    mask = _box_mask(volume.shape, 20, 40, 20, 40)
    result = drain(
        run_diffedit(volume, mask, dataclasses.replace(params, model=str(models.diffedit)))
    )
    np.testing.assert_array_equal(result.data[~mask], volume[~mask])


def test_diffedit_cancel_mid_run_raises_and_leaves_input_unchanged(params):
    volume = _volume(depth=2)
    before = volume.copy()
    mask = _box_mask(volume.shape, 20, 40, 20, 40)
    token = CancelToken()
    seen = []

    def cancel_after_first_step(event):
        seen.append(event.message)
        if "step 1/" in event.message:
            token.cancel()

    with pytest.raises(Cancelled):
        drain(run_diffedit(volume, mask, params, cancel=token), on_progress=cancel_after_first_step)
    np.testing.assert_array_equal(volume, before)
    assert sum("step" in m for m in seen) == 1  # stopped at the very next step


def test_diffedit_rejects_empty_mask_and_empty_prompt(params):
    volume = _volume(depth=2)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[1, 10:20, 10:20] = True
    with pytest.raises(InvalidInputError, match="mask is empty"):
        drain(run_diffedit(volume, mask, params, slices=[0]))
    with pytest.raises(InvalidInputError, match="prompt"):
        drain(run_diffedit(volume, mask, dataclasses.replace(params, prompt="  ")))
    with pytest.raises(InvalidInputError, match="strength"):
        dataclasses.replace(params, strength=1.5)


def test_diffedit_offline_hub_model_fails_short_and_writes_nothing(params, tmp_path, monkeypatch):
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    MODEL_CACHE.clear()
    missing = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    volume = _volume(depth=1)
    mask = _box_mask(volume.shape, 20, 40, 20, 40)
    with pytest.raises(ModelNotAvailableError) as info:
        drain(run_diffedit(volume, mask, dataclasses.replace(params, model=missing)))
    message = str(info.value)
    assert missing in message
    assert missing_hub_model_message(missing, "Stable Diffusion") in message
    assert len(message.splitlines()) <= 8 and "Traceback" not in message
    assert info.value.__cause__ is None
    assert list(hf_home.iterdir()) == []
