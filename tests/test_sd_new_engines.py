"""InstructPix2Pix, LEDITS++ and Stable unCLIP on tiny offline pipelines (CPU): masked and
unmasked runs, dtype and range, bit-identical outside the mask, a slice alone == in a
batch, cancel, provenance and the one-line offline error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen import api  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import write_volume  # noqa: E402
from napari_scigen.core.models import ModelNotAvailableError  # noqa: E402
from napari_scigen.core.params import ParameterError  # noqa: E402
from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.engines.registry import get_engine  # noqa: E402
from tiny_sd_more import TINY_RESOLUTION, more_tiny_models  # noqa: E402

#: (task, method, tiny model attribute, prompt field) of every new SD engine run.
MASKED = [
    ("edit", "instructpix2pix", "instructpix2pix", "prompt"),
    ("edit", "ledits", "ledits", "prompt"),
    ("inpaint", "unclip", "unclip", None),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return more_tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_more"))


def _params(models, task, method, attribute, prompt_field, **changes):
    values = {
        "model": str(getattr(models, attribute)),
        "steps": 2,
        "resolution": TINY_RESOLUTION,
        "context": 8,
        "feather": 2.0,
        "device": "cpu",
        "seed": 5,
    }
    if prompt_field:
        values[prompt_field] = "larger pores"
    if method == "ledits":
        values["edit_threshold"] = 0.5
    values.update(changes)
    return get_engine(task, method).params_class(**values)


def _volume(depth=3, shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < min(shape) / 4
    slices = [(disk * 25000 + 8000 + rng.normal(0, 800, shape)).clip(0) for _ in range(depth)]
    return np.stack(slices).astype(np.uint16)


def _mask(shape):
    mask = np.zeros(shape, dtype=bool)
    mask[..., 18:42, 20:46] = True
    return mask


def _run(task, method, image, mask, params, **kwargs):
    if task == "edit":
        return api.edit(image, mask, method=method, params=params, **kwargs)
    if task == "inpaint":
        return api.inpaint(image, mask, method=method, params=params, **kwargs)
    return api.generate(image, method=method, params=params, **kwargs)


@pytest.mark.parametrize(("task", "method", "attribute", "field"), MASKED, ids=lambda v: str(v))
def test_masked_run_keeps_dtype_range_and_every_pixel_outside_the_mask(
    models, task, method, attribute, field
):
    volume = _volume()
    before = volume.copy()
    mask = _mask(volume.shape)
    params = _params(models, task, method, attribute, field, batch_size=3)
    batched = _run(task, method, volume, mask, params)
    np.testing.assert_array_equal(volume, before)  # the input is never modified
    assert batched.data.dtype == np.uint16 and batched.data.shape == volume.shape
    np.testing.assert_array_equal(batched.data[~mask], volume[~mask])
    assert (batched.data[mask] != volume[mask]).mean() > 0.5
    inside = batched.data[mask]
    assert volume.min() <= inside.min() and inside.max() <= volume.max()
    np.testing.assert_array_equal(batched.labels["mask"], mask.astype(np.uint8))
    record = batched.provenance
    assert (record["task"], record["method"]) == (task, method)
    assert record["extra"]["seeds"] == {"0": 5, "1": 6, "2": 7}  # seed + z
    assert record["extra"]["adapter"] is None
    # the same slice alone gives the same pixels as in the batch of three
    alone = _run(task, method, volume, mask, dataclasses.replace(params, batch_size=1), slices=[1])
    np.testing.assert_array_equal(alone.data[1], batched.data[1])
    np.testing.assert_array_equal(alone.data[[0, 2]], volume[[0, 2]])


@pytest.mark.parametrize(("task", "method", "attribute", "field"), MASKED[:2], ids=lambda v: str(v))
def test_edit_without_mask_edits_whole_slices_alone_as_in_a_batch(
    models, task, method, attribute, field
):
    volume = _volume(depth=2, seed=1)
    params = _params(models, task, method, attribute, field, batch_size=2)
    batched = api.edit(volume, None, method=method, params=params)
    assert batched.data.dtype == np.uint16 and batched.labels == {}
    assert (batched.data != volume).mean() > 0.9
    window = batched.provenance["extra"]["window"]  # whole slices stay in the input's window
    assert window["low"] <= batched.data.min() and batched.data.max() <= window["high"]
    alone = api.edit(volume, None, method=method, params=params, slices=[1], batch_size=1)
    np.testing.assert_array_equal(alone.data[1], batched.data[1])
    np.testing.assert_array_equal(alone.data[0], volume[0])


def test_a_slice_is_the_same_alone_and_in_a_batch_of_16(models):
    volume = _volume(depth=16, seed=3)
    mask = _mask(volume.shape)
    params = _params(models, "edit", "instructpix2pix", "instructpix2pix", "prompt")
    batched = api.edit(volume, mask, method="instructpix2pix", params=params, batch_size=16)
    alone = api.edit(volume, mask, method="instructpix2pix", params=params, slices=[9])
    np.testing.assert_array_equal(alone.data[9], batched.data[9])


def test_unclip_generates_variations_per_slice_alone_as_in_a_batch(models):
    volume = _volume(depth=3, seed=2)
    params = _params(models, "generate", "unclip", "unclip", None, count=2, batch_size=4)
    result = api.generate(volume, method="unclip", params=params, slices=[0, 2])
    assert result.data.shape == (2, 2, 64, 64) and result.data.dtype == np.uint16
    window = result.provenance["extra"]["window"]
    assert window["low"] <= result.data.min() and result.data.max() <= window["high"]
    assert result.provenance["extra"]["seeds"] == {
        "0:0": 5,
        "0:1": 1000008,
        "2:0": 7,
        "2:1": 1000010,
    }
    assert not np.array_equal(result.data[0, 0], result.data[1, 0])  # variants differ
    alone = api.generate(volume, method="unclip", params=params, slices=[2], count=1)
    np.testing.assert_array_equal(alone.data[0, 0], result.data[0, 1])


def test_small_float_slice_is_padded_and_cropped_back(models):
    rng = np.random.default_rng(5)
    slice_ = rng.normal(0.5, 0.1, (40, 52)).astype(np.float32)
    mask = np.zeros(slice_.shape, dtype=bool)
    mask[10:30, 15:35] = True
    params = _params(models, "edit", "instructpix2pix", "instructpix2pix", "prompt")
    result = api.edit(slice_, mask, method="instructpix2pix", params=params)
    assert result.data.shape == (40, 52) and result.data.dtype == np.float32
    assert result.provenance["extra"]["padding"] == [[12, 12], [6, 6]]
    np.testing.assert_array_equal(result.data[~mask], slice_[~mask])
    assert not np.allclose(result.data[mask], slice_[mask])


def test_cancel_at_the_first_step_raises_and_returns_nothing(models):
    volume = _volume(depth=2)
    token = CancelToken()
    params = _params(models, "edit", "ledits", "ledits", "prompt")
    job = api.edit_job(volume, _mask(volume.shape), method="ledits", params=params, cancel=token)

    def on_progress(event):
        if "step" in event.message:
            token.cancel()

    with pytest.raises(Cancelled):
        drain(job, on_progress=on_progress)


def test_prompts_and_ledits_geometry_are_checked_before_anything_loads(models):
    volume = _volume(depth=1)
    params = _params(models, "edit", "instructpix2pix", "instructpix2pix", None)
    with pytest.raises(Exception, match="prompt is empty"):
        api.edit(volume, None, method="instructpix2pix", params=params)
    with pytest.raises(ParameterError, match="multiple of 32"):
        get_engine("edit", "ledits").params_class(resolution=72, context=8)


def test_a_missing_model_offline_is_one_clear_line_and_writes_nothing(tmp_path, capsys):
    write_volume(tmp_path / "in.tif", _volume(depth=1))
    out = tmp_path / "out.tif"
    argv = ["ledits", str(tmp_path / "in.tif"), "--prompt", "pores", "-q", "-o", str(out)]
    assert main([*argv, "--model", "nobody/no-such-model", "--local-files-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody/no-such-model" in err[0] and "offline" in err[0]
    assert not out.exists()
    with pytest.raises(ModelNotAvailableError, match="hf download timbrooks/instruct-pix2pix"):
        api.edit(
            _volume(depth=1), None, method="instructpix2pix", prompt="x", local_files_only=True
        )


def test_the_cli_commands_run_the_engines_with_and_without_a_mask(models, tmp_path):
    from napari_scigen.core.io import read_volume

    volume = _volume(depth=2)
    write_volume(tmp_path / "in.tif", volume)
    write_volume(tmp_path / "mask.tif", _mask(volume.shape).astype(np.uint8))
    common = ["--steps", "2", "--resolution", "64", "--context", "8", "--device", "cpu", "-q"]
    masked = tmp_path / "masked.tif"
    argv = ["unclip", str(tmp_path / "in.tif"), "--mask", str(tmp_path / "mask.tif")]
    assert main([*argv, "--model", str(models.unclip), *common, "-o", str(masked)]) == 0
    written = read_volume(masked)
    assert written.provenance["method"] == "unclip" and written.provenance["task"] == "inpaint"
    outside = ~_mask(volume.shape)
    np.testing.assert_array_equal(np.asarray(written.data)[outside], volume[outside])
    generated = tmp_path / "generated.tif"
    argv = ["unclip", str(tmp_path / "in.tif"), "--model", str(models.unclip), "--count", "2"]
    assert main([*argv, *common, "-o", str(generated)]) == 0
    assert (tmp_path / "generated_v0.tif").exists() and (tmp_path / "generated_v1.tif").exists()


def test_the_registry_built_edit_command_runs_any_edit_engine_like_its_own_command(
    models, tmp_path
):
    from napari_scigen.core.io import read_volume

    volume = _volume(depth=2)
    write_volume(tmp_path / "in.tif", volume)
    write_volume(tmp_path / "mask.tif", _mask(volume.shape).astype(np.uint8))
    common = ["--steps", "2", "--resolution", "64", "--context", "8", "--device", "cpu", "-q"]
    common += ["--model", str(models.instructpix2pix), "--prompt", "larger pores"]
    common += [str(tmp_path / "in.tif"), "--mask", str(tmp_path / "mask.tif")]
    generic, own = tmp_path / "edit.tif", tmp_path / "own.tif"
    assert main(["edit", "--method", "instructpix2pix", *common, "-o", str(generic)]) == 0
    assert main(["instructpix2pix", *common, "-o", str(own)]) == 0
    written = read_volume(generic)
    assert written.provenance["method"] == "instructpix2pix"
    np.testing.assert_array_equal(written.data, read_volume(own).data)
    code = main(
        ["edit", "--method", "ledits", *common, "--image-guidance-scale", "2", "-o", "x.tif"]
    )
    assert code == 2  # a flag of another edit engine is refused
