"""The DCGAN baseline: networks, training with checkpoints and exact resume, sampling, CLI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen import api  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.models import ModelNotAvailableError  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.engines._training.checkpoint import CheckpointError  # noqa: E402
from napari_scigen.engines.dcgan.networks import DCGANConfig, build_dcgan  # noqa: E402

SMALL = {"resolution": 32, "batch_size": 4, "channels": 8, "z_dim": 16, "device": "cpu"}


@pytest.fixture(scope="module")
def rock():
    torch.set_num_threads(1)
    return make_rock_volume(shape=(8, 64, 64), seed=1).volume


@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_networks_map_latents_to_images_and_images_to_logits(resolution):
    config = DCGANConfig(resolution=resolution, z_dim=12, channels=4)
    generator, discriminator = build_dcgan(config, seed=3)
    images = generator(torch.randn(2, 12))
    assert images.shape == (2, 1, resolution, resolution)
    assert images.abs().max() <= 1.0 and discriminator(images).shape == (2,)
    again, _ = build_dcgan(config, seed=3)
    for a, b in zip(generator.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="power of two"):
        DCGANConfig(resolution=48)


def test_training_checkpoints_and_resumes_exactly_where_it_stopped(rock, tmp_path):
    straight = api.train(rock, out_dir=str(tmp_path / "a"), method="dcgan", train_steps=12, **SMALL)
    api.train(rock, out_dir=str(tmp_path / "b"), method="dcgan", train_steps=7, **SMALL)
    resumed = api.train(rock, out_dir=str(tmp_path / "b"), method="dcgan", train_steps=12, **SMALL)
    assert straight.step == resumed.step == 12
    assert resumed.provenance["extra"]["resumed_from"] == "checkpoint-0000007"
    assert resumed.history["loss_G"] == straight.history["loss_G"][7:]
    np.testing.assert_array_equal(resumed.data, straight.data)  # the same preview grid
    assert straight.provenance["engine"] == "train-dcgan" and straight.provenance["task"] == "train"
    checkpoint = straight.checkpoint
    assert (checkpoint / "networks.safetensors").is_file() and (
        checkpoint / "train_state.pt"
    ).is_file()


def test_samples_keep_the_training_dtype_and_depend_only_on_their_seed(rock, tmp_path):
    run = tmp_path / "run"
    api.train(rock, out_dir=str(run), method="dcgan", train_steps=3, **SMALL)
    five = api.sample(method="dcgan", generator=str(run), count=5, batch_size=2, device="cpu")
    two = api.sample(method="dcgan", generator=str(run), count=2, seed=3, device="cpu")
    assert five.data.shape == (5, 32, 32) and five.data.dtype == rock.dtype
    np.testing.assert_array_equal(five.data[3:], two.data)
    unit = api.sample(method="dcgan", generator=str(run), count=1, window="unit", device="cpu")
    assert unit.data.dtype == np.float32 and 0.0 <= unit.data.min() <= unit.data.max() <= 1.0
    assert five.provenance["seed"] == [0, 1, 2, 3, 4]


def test_sampling_needs_a_trained_generator_and_refuses_other_checkpoints(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="training method 'dcgan'"):
        api.sample(method="dcgan", device="cpu")
    (tmp_path / "checkpoint-0000001").mkdir()
    (tmp_path / "checkpoint-0000001" / "checkpoint.json").write_text('{"format": "other/1"}')
    (tmp_path / "checkpoint-0000001" / "networks.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a napari-scigen DCGAN checkpoint"):
        api.sample(method="dcgan", generator=str(tmp_path), device="cpu")


def test_train_and_sample_commands(rock, tmp_path, capsys):
    write_volume(tmp_path / "rock.tif", rock)
    run, out = tmp_path / "run", tmp_path / "samples.tif"
    flags = ["--resolution", "16", "--batch-size", "2", "--channels", "4", "--device", "cpu"]
    assert (
        main(
            [
                "train-dcgan",
                str(tmp_path / "rock.tif"),
                "-o",
                str(run),
                "--train-steps",
                "2",
                "-q",
                *flags,
            ]
        )
        == 0
    )
    assert "trained 2 steps" in capsys.readouterr().out
    assert (
        main(["sample-dcgan", "--generator", str(run), "--count", "3", "-o", str(out), "-q"]) == 0
    )
    samples = read_volume(out)
    assert samples.data.shape == (3, 16, 16) and samples.provenance["method"] == "dcgan"


def test_the_former_dcgan_names_are_deprecated_aliases_for_one_release():
    from napari_scigen.engines.dcgan.params import DCGANSampleParams, DCGANTrainParams

    with pytest.warns(DeprecationWarning, match="checkpoint is deprecated, use generator"):
        old = DCGANSampleParams(checkpoint="run", count=2)
    with pytest.warns(DeprecationWarning, match="n is deprecated, use count"):
        assert DCGANSampleParams(n=2).count == 2
    assert old == DCGANSampleParams(generator="run", count=2)
    with pytest.warns(DeprecationWarning, match="lr is deprecated, use learning_rate"):
        assert DCGANTrainParams(lr=1e-3).learning_rate == 1e-3
    with pytest.warns(DeprecationWarning, match="steps is deprecated, use train_steps"):
        assert DCGANTrainParams(steps=7).train_steps == 7
