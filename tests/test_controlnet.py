"""ControlNet engine: Canny/layer conditioning and masked mode on tiny offline pipelines (CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError, missing_hub_model_message
from napari_scigen.core.progress import Cancelled, CancelToken, drain
from napari_scigen.core.stack import percentile_window
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.sd.canvas import VARIANT_SEED_STRIDE
from napari_scigen.engines.sd.control import canny_condition, control_from_layer
from napari_scigen.engines.sd.controlnet import (
    ControlNetParams,
    run_controlnet,
    run_controlnet_inpaint,
)


def _disk_slice(shape=(64, 64), radius=16, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centre = (shape[0] / 2, shape[1] / 2)
    distance = np.hypot(yy - centre[0], xx - centre[1])
    data = np.where(distance < radius, 42000.0, 9000.0) + rng.normal(0, 600, shape)
    return data.clip(0, 65535).astype(dtype), distance


# --------------------------------------------------------------------------- pure conditioning


def test_canny_condition_finds_disk_boundary_in_16bit_slice():
    slice_, distance = _disk_slice((96, 96), radius=25)
    edges = canny_condition(slice_, sigma=2.0, low=0.1, high=0.2)
    assert edges.dtype == np.uint8 and edges.shape == slice_.shape
    assert set(np.unique(edges)) == {0, 255}
    on_edge = edges == 255
    assert on_edge.sum() > 100  # the circumference is ~157 px
    assert np.mean(np.abs(distance[on_edge] - 25) <= 2) > 0.95  # and nothing else


def test_canny_thresholds_are_relative_to_the_data_range():
    slice_, _ = _disk_slice((80, 80), radius=20, seed=1)
    rescaled = (slice_.astype(np.float32) / 65535.0 * 3.7 - 1.2).astype(np.float32)
    np.testing.assert_array_equal(canny_condition(slice_), canny_condition(rescaled))
    # a low-contrast copy of the same structure gives the same edges too
    faint = (slice_ // 64 + 100).astype(np.uint16)
    assert np.mean(canny_condition(faint) == canny_condition(slice_)) > 0.99


def test_canny_quantile_thresholds_and_bad_thresholds():
    slice_, _ = _disk_slice((64, 64), radius=16, seed=2)
    edges = canny_condition(slice_, low=0.9, high=0.97, use_quantiles=True)
    assert 0 < (edges > 0).mean() < 0.1
    with pytest.raises(InvalidInputError, match="low <= high"):
        canny_condition(slice_, low=0.3, high=0.2)


def test_control_from_layer_draws_label_boundaries_and_masks():
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[5:15, 5:15] = 1
    labels[20:35, 18:30] = 2
    control = control_from_layer(labels)
    assert control.shape == (40, 40, 3) and control.dtype == np.uint8
    assert np.array_equal(control[..., 0], control[..., 2])
    boundary = control[..., 0] == 255
    assert boundary[5, 5:15].all() and not boundary[10, 10] and not boundary[0, 0]
    filled = control_from_layer(labels, labels_as="mask")[..., 0]
    np.testing.assert_array_equal(filled == 255, labels > 0)


def test_control_from_layer_keeps_edge_maps_and_windows_images():
    edge_map = np.zeros((20, 20), dtype=np.uint8)
    edge_map[5, :] = 255
    np.testing.assert_array_equal(control_from_layer(edge_map)[..., 1], edge_map)
    ramp = np.linspace(1000, 50000, 400, dtype=np.float32).reshape(20, 20)
    gray = control_from_layer(ramp)[..., 0]
    assert gray.min() == 0 and gray.max() == 255 and np.all(np.diff(gray.ravel()) >= 0)
    rgb = np.zeros((20, 20, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    np.testing.assert_array_equal(control_from_layer(rgb), rgb)
    with pytest.raises(InvalidInputError, match="control layer"):
        control_from_layer(np.zeros((2, 3, 4, 5)))


# --------------------------------------------------------------------------- pipelines

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tiny_sd import TINY_RESOLUTION, tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def params(models):
    return ControlNetParams(
        model=str(models.sd),
        controlnet_model=str(models.controlnet),
        inpaint_controlnet_model=str(models.controlnet),
        prompt="rock",
        steps=3,
        guidance_scale=5.0,
        resolution=TINY_RESOLUTION,
        context=8,
        feather=2,
        device="cpu",
        seed=11,
        scheduler="ddim",
    )


def _volume(depth=2):
    return np.stack([_disk_slice(seed=z)[0] for z in range(depth)])


def test_controlnet_generates_variants_per_slice_with_recorded_seeds(params):
    volume = _volume(depth=2)
    before = volume.copy()
    events = []
    result = drain(
        run_controlnet(volume, dataclasses.replace(params, count=2)), on_progress=events.append
    )
    np.testing.assert_array_equal(volume, before)
    assert result.data.shape == (2, 2, 64, 64) and result.data.dtype == np.uint16
    window = result.provenance["extra"]["window"]
    assert window["low"] <= result.data.min() and result.data.max() <= window["high"]
    assert not np.array_equal(result.data[0, 0], result.data[1, 0])  # variants differ
    assert not np.array_equal(result.data[0, 0], result.data[0, 1])  # slices differ
    seeds = result.provenance["extra"]["seeds"]
    assert seeds == {
        "0:0": 11,
        "0:1": 11 + VARIANT_SEED_STRIDE,
        "1:0": 12,
        "1:1": 12 + VARIANT_SEED_STRIDE,
    }
    assert result.provenance["engine"] == "controlnet"
    assert result.provenance["extra"]["control_source"] == "canny"
    assert result.provenance["extra"]["controlnet"] == params.controlnet_model
    assert result.images["control"].shape == (2, 64, 64, 3)
    # the run conditions on exactly what the widget's preview shows
    window = percentile_window(volume, 0.5, 99.5)
    expected = canny_condition(volume[1], window=window)
    np.testing.assert_array_equal(result.images["control"][1][..., 0], expected)
    assert sum("step" in e.message for e in events) == 4 * 3  # 4 items, 3 steps each


def test_controlnet_control_layer_steers_generation(params):
    slice_ = _disk_slice()[0]
    labels = np.zeros(slice_.shape, dtype=np.uint8)
    labels[8:30, 8:30] = 1
    labels[36:60, 30:58] = 2
    with_layer = drain(run_controlnet(slice_, params, control=labels))
    with_canny = drain(run_controlnet(slice_, params))
    assert with_layer.data.shape == (1, 64, 64)
    assert with_layer.provenance["extra"]["control_source"] == "layer"
    np.testing.assert_array_equal(with_layer.images["control"], control_from_layer(labels))
    assert not np.array_equal(with_layer.data, with_canny.data)
    # with the ControlNet switched off the control image cannot matter
    off = dataclasses.replace(params, conditioning_scale=0.0)
    np.testing.assert_array_equal(
        drain(run_controlnet(slice_, off, control=labels)).data,
        drain(run_controlnet(slice_, off)).data,
    )


def test_controlnet_slice_result_is_identical_alone_and_in_batch(params):
    volume = _volume(depth=3)
    batched = drain(run_controlnet(volume, dataclasses.replace(params, batch_size=3)))
    alone = drain(run_controlnet(volume, params, slices=[2]))
    np.testing.assert_array_equal(alone.data[:, 0], batched.data[:, 2])


def test_controlnet_inpaint_keeps_outside_mask_bit_identical(params):
    volume = _volume(depth=2)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:, 18:42, 20:46] = True
    result = drain(run_controlnet_inpaint(volume, mask, dataclasses.replace(params, count=2)))
    assert result.data.shape == (2, *volume.shape) and result.data.dtype == np.uint16
    for variant in result.data:
        np.testing.assert_array_equal(variant[~mask], volume[~mask])
        assert (variant[mask] != volume[mask]).mean() > 0.5
    assert not np.array_equal(result.data[0][mask], result.data[1][mask])
    assert result.provenance["engine"] == "controlnet-inpaint"
    assert result.provenance["extra"]["control_source"] == "inpaint"
    assert set(result.provenance["extra"]["tiles"]) == {"0:0", "0:1", "1:0", "1:1"}


def test_controlnet_inpaint_large_slice_in_crops_with_control_layer(params):
    rng = np.random.default_rng(9)
    slice_ = rng.normal(0.3, 0.05, (100, 150)).astype(np.float32)
    mask = np.zeros(slice_.shape, dtype=bool)
    mask[4:12, 5:15] = True
    mask[85:95, 130:145] = True
    labels = (rng.random(slice_.shape) > 0.7).astype(np.int32)
    result = drain(run_controlnet_inpaint(slice_, mask, params, control=labels))
    assert result.data.shape == slice_.shape and result.data.dtype == np.float32
    np.testing.assert_array_equal(result.data[~mask], slice_[~mask])
    crops = result.provenance["extra"]["tiles"]["0:0"]
    assert len(crops) == 2 and all(c[2] - c[0] == TINY_RESOLUTION for c in crops)
    assert result.provenance["extra"]["control_source"] == "layer"


def test_controlnet_cancel_mid_run_interrupts_and_leaves_input_unchanged(params):
    volume = _volume(depth=2)
    before = volume.copy()
    token = CancelToken()
    seen = []

    def cancel_after_first_step(event):
        seen.append(event.message)
        if "step 1/" in event.message:
            token.cancel()

    with pytest.raises(Cancelled):
        drain(
            run_controlnet(volume, dataclasses.replace(params, steps=6), cancel=token),
            on_progress=cancel_after_first_step,
        )
    np.testing.assert_array_equal(volume, before)
    assert sum("step" in m for m in seen) == 1  # the pipeline skipped its remaining steps
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:, 20:40, 20:40] = True
    token = CancelToken()
    seen.clear()
    with pytest.raises(Cancelled):
        drain(
            run_controlnet_inpaint(volume, mask, params, cancel=token),
            on_progress=cancel_after_first_step,
        )
    np.testing.assert_array_equal(volume, before)


def test_controlnet_offline_missing_controlnet_fails_short_and_writes_nothing(
    params, tmp_path, monkeypatch
):
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    MODEL_CACHE.clear()
    missing = "lllyasviel/sd-controlnet-canny"
    with pytest.raises(ModelNotAvailableError) as info:
        drain(
            run_controlnet(_disk_slice()[0], dataclasses.replace(params, controlnet_model=missing))
        )
    message = str(info.value)
    assert "ControlNet" in message and missing in message
    assert missing_hub_model_message(missing, "ControlNet") in message
    assert len(message.splitlines()) <= 8 and info.value.__cause__ is None
    assert list(hf_home.iterdir()) == []
    # with downloads allowed by the environment, local_files_only still refuses
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hub_base = dataclasses.replace(params, model=missing, local_files_only=True)
    with pytest.raises(ModelNotAvailableError, match="Stable Diffusion"):
        drain(run_controlnet(_disk_slice()[0], hub_base))
    assert list(hf_home.iterdir()) == []


def test_controlnet_through_api_records_task_and_method(params):
    slice_ = _disk_slice()[0]
    generated = api.generate(slice_, params=params)
    np.testing.assert_array_equal(generated.data, drain(run_controlnet(slice_, params)).data)
    assert generated.provenance["task"] == "generate"
    assert generated.provenance["method"] == "controlnet"
    mask = np.zeros(slice_.shape, dtype=bool)
    mask[20:40, 20:40] = True
    inpainted = api.inpaint(slice_, mask, method="controlnet", params=params)
    assert inpainted.provenance["task"] == "inpaint"
    np.testing.assert_array_equal(inpainted.data[~mask], slice_[~mask])
    with pytest.raises(InvalidInputError, match="control"):
        api.inpaint(slice_, mask, method="biharmonic", control=mask.astype(np.uint8))


def test_controlnet_masked_canny_control_is_the_engines_job(params):
    """``masked_control="canny"`` conditions the Canny ControlNet on the run's Canny edges:
    the same pixels as passing those edges as a control layer (what the widget used to do)."""
    volume = _volume(depth=3)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:, 18:42, 20:46] = True
    canny = dataclasses.replace(params, masked_control="canny", canny_sigma=1.5)
    result = api.inpaint(volume, mask, method="controlnet", params=canny, slices=[0, 2])
    window = percentile_window(volume, *canny.window_percentiles)
    edges = np.zeros(volume.shape, dtype=np.uint8)
    for z in (0, 2):
        edges[z] = canny_condition(volume[z], sigma=1.5, window=window)
    by_layer = drain(run_controlnet_inpaint(volume, mask, canny, control=edges, slices=[0, 2]))
    np.testing.assert_array_equal(result.data, by_layer.data)
    assert result.provenance["extra"]["control_source"] == "canny"
    assert result.provenance["params"]["masked_control"] == "canny"
    np.testing.assert_array_equal(result.data[~mask], volume[~mask])
    np.testing.assert_array_equal(result.data[1], volume[1])  # not selected
    inpaint = drain(run_controlnet_inpaint(volume, mask, params, slices=[0, 2]))
    assert inpaint.provenance["extra"]["control_source"] == "inpaint"
    assert not np.array_equal(inpaint.data, result.data)
