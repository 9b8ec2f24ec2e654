"""LoRA fine-tuning on a tiny offline Stable Diffusion (CPU): the loss goes down, the adapter
round-trips through disk, applying it changes an engine's output and unloading it restores
the base output exactly (every SD engine); resume, the CLI, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from napari_scigen import api  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import write_volume  # noqa: E402
from napari_scigen.core.models import ModelNotAvailableError  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.sd.adapters import ADAPTER_WEIGHTS, EMBEDDINGS_FILE  # noqa: E402
from tiny_sd_more import TINY_RESOLUTION, more_tiny_models  # noqa: E402

TRAIN = {
    "resolution": TINY_RESOLUTION,
    "batch_size": 2,
    "rank": 4,
    "device": "cpu",
    "preview_steps": 2,
    "checkpoint_every": 10,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return more_tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_more"))


@pytest.fixture(scope="module")
def rock():
    return make_rock_volume(shape=(6, 64, 64), seed=2).volume


@pytest.fixture(scope="module")
def adapter(models, rock, tmp_path_factory):
    """A LoRA adapter trained 30 steps on the rock, and its training result."""
    out = tmp_path_factory.mktemp("adapter")
    result = api.train(
        rock,
        out_dir=str(out),
        method="sd-lora",
        model=str(models.sd),
        train_steps=30,
        learning_rate=1e-3,
        **TRAIN,
    )
    return out, result


def _edit(models, volume, **changes):
    values = {
        "model": str(models.instructpix2pix),
        "instruction": "a microCT slice",
        "steps": 2,
        "resolution": TINY_RESOLUTION,
        "context": 8,
        "device": "cpu",
        "seed": 3,
    }
    return api.edit(volume, None, method="instructpix2pix", **{**values, **changes})


def test_lora_training_lowers_the_held_out_loss_and_writes_an_adapter(adapter):
    out, result = adapter
    before, after = result.history["eval_loss"]
    assert after < before
    assert len(result.history["loss"]) == 30 and result.step == 30
    assert (out / ADAPTER_WEIGHTS).is_file() and (out / "adapter.json").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint-0000020",
        "checkpoint-0000030",
    ]
    record = json.loads((out / "adapter.json").read_text())
    assert record["adapter"]["rank"] == 4 and record["step"] == 30
    assert (
        result.provenance["engine"] == "train-sd-lora" and result.provenance["method"] == "sd-lora"
    )
    assert result.data.shape == (TINY_RESOLUTION, TINY_RESOLUTION)  # the preview


def test_applying_the_adapter_changes_the_output_and_unloading_restores_the_base(models, adapter):
    out, _ = adapter
    volume = make_rock_volume(shape=(2, 64, 64), seed=4).volume
    base = _edit(models, volume).data
    adapted = _edit(models, volume, adapter=str(out))
    assert (adapted.data != base).mean() > 0.5
    record = adapted.provenance["extra"]["adapter"]
    assert record["folder"] == str(out) and record["lora"] and record["trained_steps"] == 30
    half = _edit(models, volume, adapter=str(out), adapter_scale=0.5).data
    assert not np.array_equal(half, adapted.data)
    np.testing.assert_array_equal(
        _edit(models, volume, adapter=str(out), adapter_scale=0.0).data, base
    )
    np.testing.assert_array_equal(_edit(models, volume).data, base)  # unloaded: exactly the base


def test_text_encoder_lora_token_and_prior_preservation_round_trip(models, rock, tmp_path):
    out = tmp_path / "token-adapter"
    api.train(
        rock,
        out_dir=str(out),
        method="sd-lora",
        model=str(models.sd),
        train_steps=4,
        learning_rate=1e-2,
        train_text_encoder=True,
        token="<mct>",
        prompt="a <mct> slice",
        prior_preservation=True,
        class_images=2,
        class_steps=2,
        **{**TRAIN, "preview_steps": 0},
    )
    assert (out / EMBEDDINGS_FILE).is_file() and (out / "class_images.safetensors").is_file()
    volume = rock[:1]
    base = _edit(models, volume, instruction="a <mct> slice").data
    adapted = _edit(models, volume, instruction="a <mct> slice", adapter=str(out))
    assert adapted.provenance["extra"]["adapter"]["token"] == "<mct>"
    assert not np.array_equal(adapted.data, base)
    np.testing.assert_array_equal(_edit(models, volume, instruction="a <mct> slice").data, base)


def test_training_resumes_from_the_newest_checkpoint_and_refuses_other_settings(
    models, rock, tmp_path
):
    out = tmp_path / "resumed"
    common = {"model": str(models.sd), "learning_rate": 1e-3, **TRAIN, "preview_steps": 0}
    api.train(rock, out_dir=str(out), method="sd-lora", train_steps=10, **common)
    resumed = api.train(rock, out_dir=str(out), method="sd-lora", train_steps=12, **common)
    assert (
        resumed.step == 12 and resumed.provenance["extra"]["resumed_from"] == "checkpoint-0000010"
    )
    assert resumed.history["step"] == [11, 12]
    with pytest.raises(InvalidInputError, match="rank 4 -> 8"):
        api.train(rock, out_dir=str(out), method="sd-lora", train_steps=14, **{**common, "rank": 8})


def test_a_cancelled_run_keeps_its_steps_and_resumes_at_the_given_learning_rate(
    models, rock, tmp_path
):
    from napari_scigen.core.progress import Cancelled, CancelToken, drain

    common = {"model": str(models.sd), **TRAIN, "preview_steps": 0}
    cancel = CancelToken()

    def stop_after_three(event):
        if event.step == 3:
            cancel.cancel()

    job = api.train_job(
        rock,
        out_dir=str(tmp_path),
        method="sd-lora",
        train_steps=6,
        learning_rate=1e-3,
        cancel=cancel,
        **common,
    )
    with pytest.raises(Cancelled):
        drain(job, on_progress=stop_after_three)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-0000003"]
    state = torch.load(tmp_path / "checkpoint-0000003" / "train_state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-3
    resumed = api.train(
        rock, out_dir=str(tmp_path), method="sd-lora", train_steps=4, learning_rate=5e-4, **common
    )
    assert resumed.history["step"] == [4]
    state = torch.load(tmp_path / "checkpoint-0000004" / "train_state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 5e-4  # the rate given now


def test_refusals_missing_adapter_fp16_on_cpu_and_a_token_not_in_the_prompt(models, rock, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        _edit(models, rock[:1], adapter=str(tmp_path / "nowhere"))
    with pytest.raises(InvalidInputError, match="float16' needs a CUDA"):
        api.train(
            rock,
            out_dir=str(tmp_path / "x"),
            method="sd-lora",
            model=str(models.sd),
            train_steps=1,
            precision="float16",
            **TRAIN,
        )
    with pytest.raises(InvalidInputError, match="does not appear in the prompt"):
        api.train(rock, out_dir=str(tmp_path / "y"), method="sd-lora", token="<new>", **TRAIN)


def test_finetune_sd_command_trains_and_reports(models, rock, tmp_path, capsys):
    write_volume(tmp_path / "rock.tif", rock)
    out = tmp_path / "cli-adapter"
    argv = ["finetune-sd", str(tmp_path / "rock.tif"), "-o", str(out), "--model", str(models.sd)]
    flags = [
        "--train-steps",
        "2",
        "--resolution",
        "64",
        "--rank",
        "2",
        "--device",
        "cpu",
        "-q",
        "--preview-steps",
        "0",
    ]
    assert main([*argv, *flags]) == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and "held-out denoising loss" in printed
    assert (out / ADAPTER_WEIGHTS).is_file()


@pytest.fixture(scope="module")
def ledits_adapter(models, rock, tmp_path_factory):
    """A LoRA adapter of the tiny LEDITS++ model (its UNet is not the tiny SD one)."""
    out = tmp_path_factory.mktemp("ledits-adapter")
    common = {**TRAIN, "preview_steps": 0}
    api.train(
        rock,
        out_dir=str(out),
        method="sd-lora",
        model=str(models.ledits),
        train_steps=3,
        learning_rate=1e-2,
        **common,
    )
    return out


@pytest.mark.parametrize("engine", ["diffedit", "controlnet", "ledits", "unclip"])
def test_every_sd_engine_applies_and_unloads_the_adapter(
    models, adapter, ledits_adapter, engine, tmp_path
):
    from tiny_sd import tiny_models

    out, _ = adapter
    volume = make_rock_volume(shape=(1, 64, 64), seed=4).volume[0]
    mask = np.zeros(volume.shape, dtype=bool)
    mask[16:48, 16:48] = True
    common = {"model": str(models.sd), "resolution": TINY_RESOLUTION, "context": 8}
    common.update(device="cpu", seed=5, steps=3)
    if engine == "diffedit":

        def run(**changes):
            values = {**common, "target_prompt": "a pore", "strength": 0.5}
            return api.edit(volume, mask, method="diffedit", **values, **changes)
    elif engine == "controlnet":
        controlnet = str(tiny_models(lambda: tmp_path / "tiny").controlnet)

        def run(**changes):
            values = {**common, "controlnet_model": controlnet, "scheduler": "ddim"}
            return api.generate(volume, method="controlnet", **values, **changes)
    elif engine == "ledits":

        def run(**changes):
            values = {**common, "model": str(models.ledits), "editing_prompt": "pores"}
            values.update(edit_threshold=0.5, steps=2)
            return api.edit(volume, mask, method="ledits", **values, **changes)

        with pytest.raises(InvalidInputError, match="does not fit this LEditsPP"):
            run(adapter=str(out))  # trained on another UNet: refused in one line
        out = ledits_adapter
    else:

        def run(**changes):
            values = {**common, "model": str(models.unclip), "steps": 2}
            return api.generate(volume, method="unclip", **values, **changes)

    base = run().data
    adapted = run(adapter=str(out))
    assert not np.array_equal(adapted.data, base)
    assert adapted.provenance["extra"]["adapter"]["folder"] == str(out)
    np.testing.assert_array_equal(run(adapter=str(out), adapter_scale=0.0).data, base)
    np.testing.assert_array_equal(run().data, base)  # the cached model was not changed


def test_the_former_steps_keyword_of_lora_training_is_a_deprecated_alias():
    from napari_scigen.engines.sd.finetune_params import SDLoRATrainParams

    with pytest.warns(DeprecationWarning, match="steps is deprecated, use train_steps"):
        old = SDLoRATrainParams(steps=7)
    assert old == SDLoRATrainParams(train_steps=7)


def test_the_former_mixed_precision_name_and_values_still_work_with_a_warning(capsys):
    from napari_scigen.cli import build_parser
    from napari_scigen.core.params import params_from_cli
    from napari_scigen.engines.sd.finetune_params import SDLoRATrainParams

    with pytest.warns(DeprecationWarning, match="mixed_precision is deprecated"):
        params = SDLoRATrainParams(mixed_precision="bf16")
    assert params.precision == "bfloat16"
    with pytest.warns(DeprecationWarning, match="'fp16' is deprecated"):
        assert SDLoRATrainParams(precision="fp16").precision == "float16"
    with pytest.warns(DeprecationWarning):
        args = build_parser().parse_args(
            ["finetune-sd", "v.tif", "-o", "run", "--mixed-precision", "no"]
        )
    with pytest.warns(DeprecationWarning):
        assert params_from_cli(SDLoRATrainParams, args, ignore_foreign=True).precision == "float32"
    assert "--mixed-precision" in capsys.readouterr().err  # the one-line CLI warning
