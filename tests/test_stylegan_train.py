"""StyleGAN training: finite losses, exact checkpoints, resume, cancel, divergence, safety."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.params import ParameterError  # noqa: E402
from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines._training.checkpoint import (  # noqa: E402
    latest_checkpoint,
    list_checkpoints,
)
from napari_scigen.engines._training.divergence import TrainingDivergedError  # noqa: E402
from napari_scigen.engines.stylegan.checkpoint import (  # noqa: E402
    export_generator,
    load_checkpoint,
    load_generator,
)
from napari_scigen.engines.stylegan.params import StyleGANTrainParams  # noqa: E402
from napari_scigen.engines.stylegan.train import run_train_stylegan  # noqa: E402
from stylegan_tiny import TINY_CONFIG_KWARGS, textured_volume, tiny_config, tiny_params  # noqa: E402

torch.set_num_threads(1)


def _assert_state_dicts_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_runs_with_finite_losses_previews_and_final_checkpoint(tmp_path):
    volume = textured_volume()
    events = []
    gen = run_train_stylegan(volume, tiny_params(), out_dir=tmp_path)
    result = drain(gen, on_progress=events.append)
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for v in result.history["loss_G"] + result.history["loss_D"])
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 2  # sample_every=2
    assert previews[0].shape == (64, 64) and previews[0].dtype == np.float32  # 4x4 grid of 16px
    assert 0.0 <= previews[0].min() and previews[0].max() <= 1.0
    assert result.step == 4 and result.checkpoint == latest_checkpoint(tmp_path)
    meta = json.loads((result.checkpoint / "checkpoint.json").read_text())
    assert meta["step"] == 4 and meta["config"]["resolution"] == 16
    assert meta["window"]["dtype"] == "uint16" and meta["window"]["low"] < meta["window"]["high"]
    assert meta["training"]["images_seen"] == 16
    assert "torch" in meta["software"]


def test_training_never_modifies_the_input_volume(tmp_path):
    volume = textured_volume()
    before = volume.copy()
    drain(run_train_stylegan(volume, tiny_params(train_steps=1), out_dir=tmp_path))
    assert np.array_equal(volume, before)


def test_checkpoint_round_trip_is_exact(tmp_path):
    result = drain(
        run_train_stylegan(textured_volume(), tiny_params(train_steps=2), out_dir=tmp_path)
    )
    first = load_checkpoint(result.checkpoint)
    second = load_checkpoint(result.checkpoint)
    for name in ("G", "G_ema", "D"):
        _assert_state_dicts_equal(first[name].state_dict(), second[name].state_dict())
    generator, meta = load_generator(tmp_path)
    _assert_state_dicts_equal(generator.state_dict(), first["G_ema"].state_dict())
    z = torch.randn(3, generator.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(generator(z, noise_mode="const"), first["G_ema"](z, noise_mode="const"))
    assert meta["step"] == 2

    exported = export_generator(result.checkpoint, tmp_path / "export" / "g.safetensors")
    assert exported.with_suffix(".json").is_file()
    reloaded, exported_meta = load_generator(exported)
    _assert_state_dicts_equal(reloaded.state_dict(), generator.state_dict())
    assert exported_meta["config"] == meta["config"] and exported_meta["window"] == meta["window"]


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    volume = textured_volume()
    straight = drain(run_train_stylegan(volume, tiny_params(train_steps=4), out_dir=tmp_path / "a"))
    drain(run_train_stylegan(volume, tiny_params(train_steps=2), out_dir=tmp_path / "b"))
    resumed = drain(run_train_stylegan(volume, tiny_params(train_steps=4), out_dir=tmp_path / "b"))
    assert resumed.history["step"] == [3, 4]  # continued from the saved step
    assert resumed.history["loss_G"] == straight.history["loss_G"][2:]
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for name in ("G", "G_ema", "D"):
        _assert_state_dicts_equal(a[name].state_dict(), b[name].state_dict())


def test_resume_false_starts_over_and_keeps_only_newest_checkpoints(tmp_path):
    volume = textured_volume()
    drain(run_train_stylegan(volume, tiny_params(train_steps=2), out_dir=tmp_path))
    again = drain(
        run_train_stylegan(volume, tiny_params(train_steps=6), out_dir=tmp_path, resume=False)
    )
    assert again.history["step"][0] == 1
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-0000004",
        "checkpoint-0000006",
    ]


def test_resume_with_other_network_sizes_keeps_the_saved_architecture(tmp_path):
    volume = textured_volume()
    drain(run_train_stylegan(volume, tiny_params(train_steps=2), out_dir=tmp_path / "a"))
    events = []
    resumed = drain(
        run_train_stylegan(
            volume, tiny_params(train_steps=4, channel_max=8, z_dim=8), out_dir=tmp_path / "a"
        ),
        on_progress=events.append,
    )
    assert "saved architecture" in events[0].message and "channel_max 8 -> 16" in events[0].message
    assert [e.step for e in events[1:]] == [3, 4] and resumed.history["step"] == [3, 4]
    assert resumed.metadata["config"] == tiny_config().to_dict()
    extra = resumed.provenance["extra"]
    assert extra["adopted_saved_config"] is True and extra["resumed_from"] == "checkpoint-0000002"
    assert extra["requested_config"]["channel_max"] == 8 and extra["config"]["channel_max"] == 16
    assert resumed.provenance["params"]["channel_max"] == 16  # what was actually trained
    assert resumed.provenance["params"]["z_dim"] == TINY_CONFIG_KWARGS["z_dim"]

    # the same as resuming with the saved sizes
    straight = drain(run_train_stylegan(volume, tiny_params(train_steps=2), out_dir=tmp_path / "b"))
    same = drain(run_train_stylegan(volume, tiny_params(train_steps=4), out_dir=tmp_path / "b"))
    assert straight.step == 2 and same.history["loss_G"] == resumed.history["loss_G"]
    assert same.provenance["extra"]["adopted_saved_config"] is False
    a, b = load_checkpoint(same.checkpoint), load_checkpoint(resumed.checkpoint)
    for name in ("G", "G_ema", "D"):
        _assert_state_dicts_equal(a[name].state_dict(), b[name].state_dict())

    # resume=False builds the requested architecture
    fresh = drain(
        run_train_stylegan(
            volume, tiny_params(train_steps=1, channel_max=8), out_dir=tmp_path / "a", resume=False
        )
    )
    assert fresh.metadata["config"]["channel_max"] == 8
    assert fresh.provenance["extra"]["adopted_saved_config"] is False


def test_resume_adopts_the_saved_architecture_through_the_api(tmp_path):
    from napari_scigen import api

    volume = textured_volume()
    first = api.train(volume, out_dir=str(tmp_path), params=tiny_params(train_steps=2))
    assert first.provenance["task"] == "train" and first.provenance["method"] == "stylegan"
    assert first.provenance["model"] == str(first.checkpoint)
    assert first.provenance["seed"] == 3 and first.provenance["engine"] == "train-stylegan"
    messages = []
    resumed = api.train(
        volume,
        out_dir=str(tmp_path),
        method="stylegan",
        params=tiny_params(train_steps=3),
        resolution=32,  # a keyword override, as scripts pass them
        seed=11,
        on_progress=lambda event: messages.append(event.message),
    )
    assert resumed.step == 3 and resumed.metadata["config"]["resolution"] == 16
    assert resumed.provenance["extra"]["adopted_saved_config"] is True
    assert resumed.provenance["seed"] == 3  # the run keeps its own seed
    assert any("resolution 32 -> 16" in message for message in messages)


def test_cancel_raises_and_keeps_progress(tmp_path):
    volume = textured_volume()
    cancel = CancelToken()
    seen = []

    def on_progress(event):
        seen.append(event.step)
        if event.step == 3:
            cancel.cancel()

    with pytest.raises(Cancelled):
        drain(
            run_train_stylegan(
                volume, tiny_params(train_steps=50), out_dir=tmp_path, cancel=cancel
            ),
            on_progress=on_progress,
        )
    assert seen == [1, 2, 3]
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000003"
    resumed = drain(run_train_stylegan(volume, tiny_params(train_steps=4), out_dir=tmp_path))
    assert resumed.history["step"] == [4]


def test_exploding_learning_rate_raises_a_clear_divergence_error(tmp_path):
    params = tiny_params(train_steps=30, learning_rate=1e25, augment=False)
    with pytest.raises(TrainingDivergedError, match="diverged at step"):
        drain(run_train_stylegan(textured_volume(), params, out_dir=tmp_path))


def test_slices_smaller_than_the_resolution_are_rejected_unless_resized(tmp_path):
    small = textured_volume(shape=(3, 12, 20))
    with pytest.raises(InvalidInputError, match="smaller than the generator resolution"):
        drain(run_train_stylegan(small, tiny_params(train_steps=1), out_dir=tmp_path / "a"))
    result = drain(
        run_train_stylegan(small, tiny_params(train_steps=1, crop=False), out_dir=tmp_path / "b")
    )
    assert result.step == 1


def test_isotropic_training_samples_all_three_slicing_directions(tmp_path):
    volume = textured_volume(shape=(16, 16, 16), dtype=np.uint8)
    result = drain(
        run_train_stylegan(
            volume, tiny_params(train_steps=1, axes=("z", "y", "x")), out_dir=tmp_path
        )
    )
    assert result.metadata["train_params"]["axes"] == ["z", "y", "x"]


def test_train_params_validate_axes_counts_and_sizes_with_invalid_input_errors():
    from napari_scigen.core.params import ParameterError

    for bad, message in [
        ({"axes": ("q",)}, "axes"),
        ({"axes": ()}, "axes"),
        ({"axes": ("z", "z")}, "axes"),
        ({"train_steps": 0}, "train_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"r1_interval": 0}, "r1_interval"),
        ({"sample_every": 0}, "sample_every"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"resolution": 48}, "resolution"),
        ({"channel_max": 0}, "channel_max"),
        ({"window_percentiles": (99.0, 1.0)}, "window_percentiles"),
        ({"mixing_prob": 1.5}, "mixing_prob"),
    ]:
        with pytest.raises(InvalidInputError, match=message) as caught:
            StyleGANTrainParams(**bad)
        assert isinstance(caught.value, ParameterError), bad
    params = StyleGANTrainParams(batch_size=16, axes=["z", "y"])
    assert params.axes == ("z", "y")
    assert params.resolved_r1_gamma() == pytest.approx(0.0002 * 64**2 / 16)
    assert params.network_config() == StyleGANTrainParams().network_config()


def test_checkpoints_load_only_with_weights_only(tmp_path, monkeypatch):
    result = drain(
        run_train_stylegan(textured_volume(), tiny_params(train_steps=1), out_dir=tmp_path)
    )
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_checkpoint(result.checkpoint)
    assert calls == [True]
    assert set(loaded["train_state"]) == {"opt_G", "opt_D", "rng_data", "rng_device"}


def test_closing_the_generator_keeps_a_checkpoint(tmp_path):
    gen = run_train_stylegan(textured_volume(), tiny_params(train_steps=50), out_dir=tmp_path)
    for event in gen:
        if event.step == 2:
            break
    gen.close()  # what a GUI worker does when it quits
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000002"


def test_bfloat16_training_keeps_float32_weights_that_resume_and_sample_finite_slices(tmp_path):
    from napari_scigen.engines.stylegan.params import StyleGANSampleParams
    from napari_scigen.engines.stylegan.sample import run_sample_slices

    volume = textured_volume()
    params = tiny_params(train_steps=2, r1_interval=2, precision="bfloat16")
    first = drain(run_train_stylegan(volume, params, out_dir=tmp_path))
    resumed = drain(run_train_stylegan(volume, params.replace(train_steps=3), out_dir=tmp_path))
    history = {k: first.history[k] + resumed.history[k] for k in first.history}
    assert history["step"] == [1, 2, 3]
    assert all(math.isfinite(v) for v in history["loss_G"] + history["loss_D"])
    r1 = [history["r1"][0], history["r1"][2]]  # R1 ran at steps 0 and 2, in float32
    assert all(math.isfinite(v) and v > 0 for v in r1)
    loaded = load_checkpoint(resumed.checkpoint)
    assert {p.dtype for p in loaded["G_ema"].parameters()} == {torch.float32}
    assert resumed.metadata["train_params"]["precision"] == "bfloat16"
    sample = StyleGANSampleParams(generator=str(tmp_path), count=2, window="unit", device="cpu")
    slices = drain(run_sample_slices(sample)).data
    assert slices.shape == (2, 16, 16) and np.isfinite(slices).all()


def test_channels_last_training_runs_and_checkpoints_standard_weights(tmp_path):
    volume = textured_volume()
    params = tiny_params(train_steps=2, r1_interval=2, channels_last=True)
    result = drain(run_train_stylegan(volume, params, out_dir=tmp_path))
    assert all(math.isfinite(v) for v in result.history["loss_G"] + result.history["loss_D"])
    loaded = load_checkpoint(result.checkpoint)
    assert all(p.is_contiguous() for p in loaded["G"].parameters())
    resumed = drain(run_train_stylegan(volume, params.replace(train_steps=3), out_dir=tmp_path))
    assert resumed.history["step"] == [3] and math.isfinite(resumed.history["loss_D"][0])


def test_float16_on_the_cpu_is_refused_with_one_line(tmp_path):
    params = tiny_params(precision="float16")
    with pytest.raises(ParameterError) as refused:
        drain(run_train_stylegan(textured_volume(), params, out_dir=tmp_path))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("precision float16 needs a CUDA GPU")
    assert "bfloat16" in message and not tmp_path.joinpath("checkpoint-0000001").exists()


@pytest.mark.gpu
def test_training_resume_and_interpolation_run_on_cuda(tmp_path):
    from napari_scigen.engines.stylegan.interpolate import run_interpolate_stylegan
    from napari_scigen.engines.stylegan.params import StyleGANInterpolateParams

    volume = textured_volume()
    drain(run_train_stylegan(volume, tiny_params(train_steps=2, device="cuda"), out_dir=tmp_path))
    resumed = drain(
        run_train_stylegan(volume, tiny_params(train_steps=3, device="cuda"), out_dir=tmp_path)
    )
    assert resumed.history["step"] == [3]
    params = StyleGANInterpolateParams(generator=str(tmp_path), projection_steps=3, device="cuda")
    result = drain(run_interpolate_stylegan(volume, params, missing=[2]))
    assert np.array_equal(result.data[[0, 1, 3, 4, 5]], volume[[0, 1, 3, 4, 5]])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_channels_last_training_resumes_on_cuda(tmp_path, precision):
    volume = textured_volume()
    params = tiny_params(
        train_steps=2, r1_interval=2, precision=precision, channels_last=True, device="cuda"
    )
    first = drain(run_train_stylegan(volume, params, out_dir=tmp_path))
    resumed = drain(run_train_stylegan(volume, params.replace(train_steps=3), out_dir=tmp_path))
    losses = first.history["loss_G"] + first.history["loss_D"] + resumed.history["loss_D"]
    assert resumed.history["step"] == [3] and all(math.isfinite(v) for v in losses)
    assert math.isfinite(first.history["r1"][0])
    state = torch.load(resumed.checkpoint / "train_state.pt", weights_only=True)
    assert ("scaler_G" in state) == (precision == "float16")
    loaded = load_checkpoint(resumed.checkpoint)
    assert {p.dtype for p in loaded["G"].parameters()} == {torch.float32}
