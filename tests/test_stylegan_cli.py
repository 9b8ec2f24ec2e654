"""``napari-scigen train-stylegan``, ``sample-stylegan``, ``walk-stylegan`` and ``export-stylegan``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_scigen._cli.stylegan import train_params_from_args  # noqa: E402
from napari_scigen.cli import build_parser, main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.params import params_from_cli, params_to_argv  # noqa: E402
from napari_scigen.engines.stylegan.params import (  # noqa: E402
    StyleGANSampleParams,
    StyleGANTrainParams,
    StyleGANWalkParams,
)
from stylegan_tiny import TINY_CONFIG_KWARGS, textured_volume  # noqa: E402

TINY_ARGS = [
    "--resolution", str(TINY_CONFIG_KWARGS["resolution"]),
    "--z-dim", str(TINY_CONFIG_KWARGS["z_dim"]),
    "--w-dim", str(TINY_CONFIG_KWARGS["w_dim"]),
    "--mapping-layers", str(TINY_CONFIG_KWARGS["mapping_layers"]),
    "--channel-base", str(TINY_CONFIG_KWARGS["channel_base"]),
    "--channel-max", str(TINY_CONFIG_KWARGS["channel_max"]),
    "--batch-size", "4",
    "--device", "cpu",
    "-q",
]  # fmt: skip


def _train(tmp_path, steps: int, *flags: str) -> int:
    """``train-stylegan`` of a small texture (written once) into ``tmp_path/run``."""
    source = tmp_path / "vol.tif"
    if not source.exists():
        write_volume(source, textured_volume(shape=(4, 20, 20)), voxel_size=(1.0, 1.0, 1.0))
    run_dir = str(tmp_path / "run")
    return main(["train-stylegan", str(source), "-o", run_dir, "--train-steps", str(steps), *flags])


def test_train_resume_export_and_sample_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _train(tmp_path, 2, *TINY_ARGS) == 0
    exported = tmp_path / "g.safetensors"
    assert _train(tmp_path, 3, "--export", str(exported), *TINY_ARGS) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and exported.is_file()

    samples = tmp_path / "samples.tif"
    assert (
        main(["sample-stylegan", "--generator", str(exported), "-n", "3", "-o", str(samples), "-q"])
        == 0
    )
    read = read_volume(samples)
    assert read.data.shape == (3, 16, 16) and read.data.dtype == np.uint16
    assert read.provenance["engine"] == "sample-stylegan"
    assert read.provenance["model"] == str(exported.resolve())
    assert read.provenance["seed"] == [0, 1, 2] and read.provenance["params"]["count"] == 3

    walk = tmp_path / "walk.tif"
    args = ["walk-stylegan", "--generator", str(exported), "--frames", "4", "--seed-b", "7"]
    assert main([*args, "--device", "cpu", "-o", str(walk), "-q"]) == 0
    frames = read_volume(walk)
    # the samples' grey values: the training data's dtype and window (issue 21, finding 13)
    assert frames.data.shape == (4, 16, 16) and frames.data.dtype == read.data.dtype
    assert frames.provenance["extra"]["window"] == read.provenance["extra"]["window"]
    assert frames.provenance["engine"] == "latent-walk-stylegan"
    assert frames.provenance["seed"] == [0, 7]

    again = tmp_path / "again.safetensors"
    assert main(["export-stylegan", str(run_dir), "-o", str(again)]) == 0
    assert again.with_suffix(".json").is_file()


def test_train_with_bad_axes_is_a_user_error(tmp_path, capsys):
    source = tmp_path / "vol.tif"
    write_volume(source, textured_volume(shape=(2, 20, 20)))
    code = main(
        ["train-stylegan", str(source), "-o", str(tmp_path / "r"), "--axes", "zq", *TINY_ARGS]
    )
    assert code == 2
    assert "--axes" in capsys.readouterr().err


def test_resuming_with_other_sizes_keeps_the_saved_architecture(tmp_path, capsys):
    import json

    run_dir = tmp_path / "run"
    assert _train(tmp_path, 1, *TINY_ARGS) == 0
    capsys.readouterr()
    assert _train(tmp_path, 2, *TINY_ARGS, "--channel-max", "8") == 0
    out = capsys.readouterr().out
    assert "resumed checkpoint-0000001 with its saved architecture" in out, out
    assert "trained 2 steps" in out and "None" not in out
    saved = json.loads((run_dir / "checkpoint-0000002" / "checkpoint.json").read_text())
    assert saved["config"]["channel_max"] == TINY_CONFIG_KWARGS["channel_max"]

    # --no-resume starts over with the requested sizes
    assert _train(tmp_path, 1, "--no-resume", *TINY_ARGS, "--channel-max", "8") == 0
    fresh = json.loads((run_dir / "checkpoint-0000001" / "checkpoint.json").read_text())
    assert fresh["config"]["channel_max"] == 8


def _parse(command: list[str]):
    return build_parser().parse_args(command)


def test_train_params_round_trip_through_the_command_line_flags():
    params = StyleGANTrainParams(
        train_steps=123,
        resolution=32,
        batch_size=3,
        augment=False,
        crop=False,
        axes=("z", "x"),
        sample_every=7,
        checkpoint_every=9,
        seed=5,
        device="cpu",
        precision="bfloat16",
        channels_last=True,
        learning_rate=0.001,
        r1_gamma=0.25,
        r1_interval=4,
        ema_kimg=1.5,
        ema_rampup=None,
        mixing_prob=0.5,
        window_percentiles=(1.0, 99.0),
        keep_checkpoints=0,
        preview_count=4,
        z_dim=32,
        w_dim=24,
        mapping_layers=2,
        channel_base=512,
        channel_max=32,
    )
    assert all(getattr(params, k) != v for k, v in StyleGANTrainParams().to_dict().items())
    argv = params_to_argv(params)
    assert "--no-augment" in argv and "--no-crop" in argv  # today's flag names still work
    args = _parse(["train-stylegan", "vol.tif", "-o", "run", *argv])
    assert train_params_from_args(args) == params
    assert args.output == "run" and args.resume
    with pytest.warns(DeprecationWarning, match="--run-dir"):
        defaults = _parse(["train-stylegan", "vol.tif", "--run-dir", "run", "--no-resume"])
    assert train_params_from_args(defaults) == StyleGANTrainParams() and not defaults.resume
    assert defaults.output == "run"


def test_mixed_precision_flags_are_in_the_help_and_float16_on_cpu_is_a_one_line_user_error(
    tmp_path, capsys
):
    with pytest.raises(SystemExit):
        _parse(["train-stylegan", "--help"])
    shown = capsys.readouterr().out
    assert "--precision" in shown and "--channels-last" in shown and "bfloat16" in shown
    assert _train(tmp_path, 1, *TINY_ARGS, "--precision", "float16") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "float16 needs a CUDA GPU" in err and "bfloat16" in err
    assert not (tmp_path / "run").exists()


def test_axes_accept_the_earlier_letters_spelling():
    args = _parse(["train-stylegan", "vol.tif", "-o", "run", "--axes", "zyx"])
    assert train_params_from_args(args).axes == ("z", "y", "x")


def test_sample_and_walk_params_round_trip_through_the_command_line_flags():
    params = StyleGANSampleParams(
        generator="g.safetensors",
        count=3,
        seed=9,
        truncation_psi=0.5,
        device="cpu",
        noise="const",
        window="unit",
        batch_size=2,
    )
    assert all(getattr(params, k) != v for k, v in StyleGANSampleParams().to_dict().items())
    argv = params_to_argv(params)
    assert {"--generator", "--count", "--truncation"} <= set(argv)
    args = _parse(["sample-stylegan", *argv, "-o", "out.tif"])
    assert params_from_cli(StyleGANSampleParams, args) == params
    short = _parse(["sample-stylegan", "-n", "3", "--truncation", "0.5", "-o", "out.tif"])
    assert params_from_cli(StyleGANSampleParams, short) == StyleGANSampleParams(
        count=3, truncation_psi=0.5
    )

    walk = StyleGANWalkParams(
        generator="run",
        seed_a=4,
        seed_b=6,
        frames=5,
        truncation_psi=1.0,
        slerp=False,
        device="cpu",
        noise="none",
    )
    assert all(getattr(walk, k) != v for k, v in StyleGANWalkParams().to_dict().items())
    args = _parse(["walk-stylegan", *params_to_argv(walk), "-o", "walk.tif"])
    assert params_from_cli(StyleGANWalkParams, args) == walk


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--count", "0"], "--count"), (["--truncation", "3"], "--truncation")],
)
def test_sample_with_bad_values_is_a_user_error(tmp_path, capsys, flags, message):
    assert main(["sample-stylegan", *flags, "-o", str(tmp_path / "s.tif")]) == 2
    assert message in capsys.readouterr().err


def test_sample_refuses_to_overwrite_without_flag(tmp_path, capsys):
    target = tmp_path / "exists.tif"
    target.write_bytes(b"x")
    assert main(["sample-stylegan", "-n", "1", "-o", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_importing_the_engine_package_and_cli_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_scigen.engines.stylegan, napari_scigen._cli.stylegan;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("cls", "old", "new", "value"),
    [
        (StyleGANTrainParams, "steps", "train_steps", 7),
        (StyleGANTrainParams, "lr", "learning_rate", 0.001),
        (StyleGANSampleParams, "checkpoint", "generator", "g.safetensors"),
        (StyleGANSampleParams, "n", "count", 3),
        (StyleGANSampleParams, "noise_mode", "noise", "none"),
        (StyleGANWalkParams, "noise_mode", "noise", "none"),
    ],
)
def test_the_former_stylegan_names_are_deprecated_aliases_for_one_release(cls, old, new, value):
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated, use {new}"):
        params = cls(**{old: value})
    assert params == cls(**{new: value})
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        assert getattr(params, old) == value


def test_the_former_stylegan_flags_still_work_hidden_with_a_warning(capsys):
    old = ["--checkpoint", "g.safetensors", "--noise-mode", "none", "-o", "s.tif"]
    with pytest.warns(DeprecationWarning) as warned:
        args = _parse(["sample-stylegan", *old])
    said = " ".join(str(w.message) for w in warned)
    assert "--checkpoint is deprecated, use --generator" in said
    assert "--noise-mode is deprecated, use --noise" in said
    assert params_from_cli(StyleGANSampleParams, args) == StyleGANSampleParams(
        generator="g.safetensors", noise="none"
    )
    with pytest.warns(DeprecationWarning, match="--lr is deprecated, use --learning-rate"):
        args = _parse(["train-stylegan", "v.tif", "-o", "run", "--lr", "0.001"])
    assert train_params_from_args(args).learning_rate == 0.001
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _parse(["sample-stylegan", "--help"])
    shown = capsys.readouterr().out
    assert "--generator" in shown and "--checkpoint" not in shown and "--noise-mode" not in shown


def test_a_diverging_training_is_a_one_line_user_error_like_the_learned_engines(tmp_path, capfd):
    code = _train(tmp_path, 30, *TINY_ARGS, "--learning-rate", "1e25", "--no-augment")
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "diverged at step" in err and "Traceback" not in err
    assert len(lines) == 1, err
