"""The training infrastructure every trainer shares (``engines/_training``): the step loop,
cancel, resume, divergence as a user error, and the checkpoint errors on the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen import api  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import write_volume  # noqa: E402
from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines._training.checkpoint import latest_checkpoint  # noqa: E402
from napari_scigen.engines._training.divergence import TrainingDivergedError  # noqa: E402
from napari_scigen.engines._training.loop import run_steps  # noqa: E402
from stylegan_tiny import textured_volume  # noqa: E402

#: A DCGAN small enough for a few CPU steps in well under a second.
DCGAN = {"resolution": 16, "batch_size": 2, "channels": 4, "z_dim": 8, "device": "cpu"}


class _Budget:
    train_steps = 6
    checkpoint_every = 2
    sample_every = 3


def _losses_until_nan(nan_at: int):
    """A step function whose loss is finite until step ``nan_at`` (counted from 0)."""
    return lambda index: {"loss": math.nan if index >= nan_at else 1.0 / (index + 1)}


def _saving(saved: list[int]):
    def save(done: int):
        saved.append(done)
        return f"checkpoint-{done:07d}"

    return save


@pytest.fixture(scope="module")
def rock():
    torch.set_num_threads(1)
    return textured_volume(shape=(6, 24, 24))


def test_the_loop_checkpoints_periodically_records_history_and_previews_on_schedule():
    saved: list[int] = []
    history: dict[str, list[float]] = {}
    loop = run_steps(
        _losses_until_nan(99),
        _Budget,
        start_step=0,
        save=_saving(saved),
        history=history,
        what="test",
        hint="",
        preview=lambda: np.zeros((2, 2), np.float32),
    )
    events = []
    done = drain(loop, on_progress=events.append)
    assert done == 6 and history["step"] == [1, 2, 3, 4, 5, 6]
    assert saved == [2, 4]  # the final checkpoint is the trainer's
    assert [e.step for e in events if e.preview is not None] == [3, 6]
    assert events[0].message == "step 1/6  loss 1.0000"


def test_a_nan_loss_raises_the_user_error_naming_the_last_good_checkpoint_and_saves_nothing():
    saved: list[int] = []
    loop = run_steps(
        _losses_until_nan(4),
        _Budget,
        start_step=0,
        save=_saving(saved),
        history={},
        what="Test GAN",
        hint="run again with learning_rate=0.1 (now 1)",
        options=("learning_rate",),
    )
    with pytest.raises(TrainingDivergedError) as caught:
        drain(loop)
    assert isinstance(caught.value, InvalidInputError)  # a user error: exit 2, one line
    message = str(caught.value)
    assert message.startswith("Test GAN: training diverged at step 5 (loss: nan)")
    assert "run again with learning_rate=0.1 (now 1)" in message
    assert "the last good checkpoint checkpoint-0000004 is kept" in message
    assert caught.value.options == ("learning_rate",)  # respelled by each front-end
    assert saved == [2, 4]


def test_cancelling_or_closing_the_loop_checkpoints_the_work_done_once():
    for stop in ("cancel", "close"):
        saved: list[int] = []
        cancel = CancelToken()
        loop = run_steps(
            _losses_until_nan(99),
            _Budget,
            start_step=1,
            save=_saving(saved),
            history={},
            what="test",
            hint="",
            cancel=cancel,
        )
        assert next(loop).step == 2 and next(loop).step == 3
        if stop == "cancel":
            cancel.cancel()
            with pytest.raises(Cancelled):
                next(loop)
        else:
            loop.close()
        assert saved == [2, 3], stop


def test_a_run_whose_budget_is_spent_only_reports_it():
    saved: list[int] = []
    loop = run_steps(
        _losses_until_nan(0),
        _Budget,
        start_step=6,
        save=_saving(saved),
        history={},
        what="t",
        hint="",
    )
    events = []
    assert drain(loop, on_progress=events.append) == 6
    assert [e.message for e in events] == ["already trained for 6 steps"] and saved == []


def test_a_cancelled_dcgan_run_keeps_a_checkpoint_and_resuming_equals_an_uninterrupted_run(
    rock, tmp_path
):
    straight = api.train(rock, out_dir=str(tmp_path / "a"), method="dcgan", train_steps=5, **DCGAN)
    cancel = CancelToken()

    def stop_after_two(event):
        if event.step == 2:
            cancel.cancel()

    job = api.train_job(
        rock, out_dir=str(tmp_path / "b"), method="dcgan", train_steps=5, cancel=cancel, **DCGAN
    )
    with pytest.raises(Cancelled):
        drain(job, on_progress=stop_after_two)
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-0000002"
    resumed = api.train(rock, out_dir=str(tmp_path / "b"), method="dcgan", train_steps=5, **DCGAN)
    assert resumed.history["step"] == [3, 4, 5]
    assert (straight.resumed_from, resumed.resumed_from) == (None, "checkpoint-0000002")
    assert resumed.history["loss_G"] == straight.history["loss_G"][2:]


def test_a_diverging_dcgan_run_is_a_one_line_user_error_on_the_command_line(rock, tmp_path, capfd):
    write_volume(tmp_path / "rock.tif", rock)
    flags = ["--resolution", "16", "--batch-size", "2", "--channels", "4", "--device", "cpu"]
    command = ["train-dcgan", str(tmp_path / "rock.tif"), "-o", str(tmp_path / "run"), "-q"]
    code = main([*command, "--train-steps", "20", "--learning-rate", "1e30", *flags])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "DCGAN: training diverged at step" in err
    assert "run again with --learning-rate 1e+29 (now 1e+30)" in err  # the command's own flag


def test_a_diverging_dcgan_run_raises_training_diverged_through_the_api(rock, tmp_path):
    with pytest.raises(TrainingDivergedError, match="DCGAN: training diverged at step"):
        api.train(
            rock,
            out_dir=str(tmp_path),
            method="dcgan",
            train_steps=20,
            learning_rate=1e30,
            **DCGAN,
        )


def test_a_foreign_checkpoint_is_a_one_line_user_error_for_every_trainer(tmp_path, capfd):
    fake = tmp_path / "run" / "checkpoint-0000001"
    fake.mkdir(parents=True)
    (fake / "checkpoint.json").write_text(json.dumps({"format": "other/1", "step": 1}))
    (fake / "networks.safetensors").write_bytes(b"")
    out = tmp_path / "x.tif"
    code = main(["sample-dcgan", "--generator", str(tmp_path / "run"), "-o", str(out), "-q"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "not a napari-scigen DCGAN checkpoint" in err
    assert not out.exists()


def _learned_fit(draw, params):
    """A learned engine's fit of a tiny U-Net on the batches ``draw`` makes."""
    from napari_scigen.core.progress import Progress
    from napari_scigen.engines.learned.networks import UNetConfig, build_network
    from napari_scigen.engines.learned.training import train_network

    return train_network(
        build_network(UNetConfig(in_channels=2, base_channels=4)),
        draw,
        params,
        device="cpu",
        task_key="k",
        rng=np.random.default_rng(0),
        progress=lambda fraction, message: Progress(0, 0, message),
        label="learned interpolation",
    )


def test_a_learned_fit_on_a_nan_loss_raises_training_diverged_naming_its_option():
    from napari_scigen.engines.learned.params import LearnedInterpolateParams
    from napari_scigen.engines.learned.sampling import Batch

    def draw(batch_size, with_real=False):  # a target with a NaN pixel: the loss is NaN
        target = np.zeros((batch_size, 1, 8, 8), np.float32)
        target[0, 0, 0, 0] = np.nan
        inputs = np.zeros((batch_size, 2, 8, 8), np.float32)
        return Batch(inputs, target, np.ones_like(target), None)

    params = LearnedInterpolateParams(train_steps=3, batch_size=2, device="cpu")
    with pytest.raises(TrainingDivergedError) as caught:
        drain(_learned_fit(draw, params))
    assert str(caught.value).startswith("learned interpolation: training diverged at step 1")
    lr = params.learning_rate
    assert f"learning_rate={lr / 10:g} (now {lr:g})" in str(caught.value)
    assert caught.value.options == ("learning_rate",)  # no checkpoint folder: nothing kept


def _fake_checkpoint(run, step: int, format: str):  # noqa: A002
    path = run / f"checkpoint-{step:07d}"
    path.mkdir(parents=True)
    (path / "checkpoint.json").write_text(json.dumps({"format": format, "step": step}))
    (path / "networks.safetensors").write_bytes(b"weights")
    return path


@pytest.mark.parametrize("resume_flag", ["--resume", "--no-resume"])
def test_a_folder_of_another_trainers_checkpoints_is_refused_and_left_untouched(
    rock, tmp_path, capfd, resume_flag
):
    write_volume(tmp_path / "rock.tif", rock)
    run = tmp_path / "run"
    theirs = _fake_checkpoint(run, 1, "napari-scigen-stylegan/1")
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    flags = ["--resolution", "16", "--batch-size", "2", "--channels", "4", "--device", "cpu"]
    command = ["train", str(tmp_path / "rock.tif"), "-o", str(run), "--method", "dcgan"]
    code = main([*command, resume_flag, "--train-steps", "2", "-q", *flags])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds 1 checkpoint(s) of another trainer" in err
    assert "format napari-scigen-stylegan/1), not DCGAN ones" in err
    assert "--resume and --no-resume alike" in err  # options respelled as the command's flags
    assert sorted(p.name for p in run.iterdir()) == [theirs.name]
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before


def test_pruning_and_resuming_see_only_the_runs_own_format(tmp_path):
    from napari_scigen.engines._training.checkpoint import list_checkpoints, prune_checkpoints
    from napari_scigen.engines._training.resume import resume_point

    mine = [_fake_checkpoint(tmp_path, step, "mine/1") for step in (1, 2, 3)]
    other = _fake_checkpoint(tmp_path, 4, "other/1")
    prune_checkpoints(tmp_path, keep=1, replaces=[other], format="mine/1")
    assert list_checkpoints(tmp_path) == [mine[2], other]
    with pytest.raises(InvalidInputError, match="resume=True and resume=False alike"):
        resume_point(tmp_path, False, format="mine/1", what="mine")
    import shutil

    shutil.rmtree(other)
    assert resume_point(tmp_path, True, format="mine/1", what="mine").checkpoint == mine[2]


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("napari_scigen.engines.stylegan", "TrainResult", "result"),
        ("napari_scigen.engines.stylegan.train", "TrainingDivergedError", "divergence"),
        ("napari_scigen.engines.stylegan.train", "SliceDataset", "dataset"),
        ("napari_scigen.engines.stylegan.train", "preview_grid", "preview"),
        ("napari_scigen.engines.stylegan.train", "hardware_description", "hardware"),
        ("napari_scigen.engines.stylegan.checkpoint", "latest_checkpoint", "checkpoint"),
        ("napari_scigen.engines.stylegan.checkpoint", "load_tensors_checkpoint", "checkpoint"),
        ("napari_scigen.engines.stylegan.checkpoint", "check_resume_source", "resume"),
        ("napari_scigen.engines.stylegan.augment", "diff_augment", "augment"),
    ],
)
def test_a_name_moved_to_the_shared_training_package_still_imports_with_a_deprecation_warning(
    old, name, new
):
    import importlib

    moved = getattr(importlib.import_module(f"napari_scigen.engines._training.{new}"), name)
    with pytest.warns(DeprecationWarning, match=f"{old}: {name} is deprecated, use napari_scigen"):
        assert getattr(importlib.import_module(old), name) is moved


def test_a_learned_fit_refuses_a_checkpoint_folder_of_another_trainer(tmp_path):
    from napari_scigen.engines.learned.params import LearnedInterpolateParams

    theirs = _fake_checkpoint(tmp_path, 5, "napari-scigen-dcgan/1")
    params = LearnedInterpolateParams(
        train_steps=1, batch_size=2, device="cpu", checkpoint_dir=str(tmp_path), resume=False
    )
    with pytest.raises(InvalidInputError, match="of another trainer .*not learned-engine ones"):
        drain(_learned_fit(lambda *args, **kwargs: pytest.fail("no batch is drawn"), params))
    assert sorted(tmp_path.iterdir()) == [theirs]
