"""Training runs resume only on the data they were trained on (issue 20, class 3).

StyleGAN, DCGAN and LoRA (SD fine-tuning) checkpoints record the content identity of the
training volume (:func:`~napari_scigen.core.io.identity.array_identity`). Each row of the
table trains a tiny run on ``v.tif`` (as an interrupted run leaves it: a checkpoint short of
the requested steps), rewrites ``v.tif`` with other values of the same shape and dtype,
then runs the same command again: exit 2, one line, the run folder and every input
unchanged. ``--no-resume`` starts over, and the folder then holds only the new run's
checkpoints. The LoRA rows also cover a damaged random-generator state in a checkpoint
and Stable Diffusion UNet weights of the wrong shape.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr", minversion="3")

from _reliability import Case, run_case  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402

_STYLEGAN = ["--resolution", "16", "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "1"]
_STYLEGAN += ["--channel-base", "64", "--channel-max", "8", "--batch-size", "2"]
_DCGAN = ["--resolution", "16", "--channels", "4", "--z-dim", "8", "--batch-size", "2"]
_LORA = [
    "--resolution",
    "64",
    "--no-crop",
    "--batch-size",
    "1",
    "--rank",
    "2",
    "--preview-steps",
    "0",
]
_COMMON = ["--device", "cpu", "--checkpoint-every", "1", "-q"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny offline Stable Diffusion folder (random weights)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from tiny_sd import build_tiny_sd_pipeline

    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny_sd") / "sd")


def _command(name: str, tiny_sd: Path | None = None) -> list[str]:
    """The training command ``name`` on ``{d}/v.tif`` into ``{d}/out/run`` (no step count)."""
    flags = {"train-stylegan": _STYLEGAN, "train-dcgan": _DCGAN, "finetune-sd": _LORA}[name]
    model = ["--model", str(tiny_sd)] if name == "finetune-sd" else []
    return [name, "{d}/v.tif", "-o", "{d}/out/run", *flags, *model, *_COMMON]


def _train(d: Path, argv: list[str], steps: int) -> None:
    torch.set_num_threads(1)
    assert main([a.format(d=d) for a in argv] + ["--train-steps", str(steps)]) == 0


def _change_the_volume(d: Path) -> None:
    """Rewrite ``v.tif`` with other values of the same shape and dtype."""
    volume = read_volume(d / "v.tif").data
    write_volume(d / "v.tif", volume[::-1].copy())


def _interrupted_then_changed(argv: list[str]):
    def setup(d: Path) -> None:
        _train(d, argv, 1)
        _change_the_volume(d)

    return setup


def _train_state(d: Path) -> Path:
    return next((d / "out" / "run").glob("checkpoint-*/train_state.pt"))


def _damaged_rng(argv: list[str], rng_data):
    """Setup: a one-step run whose checkpoint's data-generator state is ``rng_data``."""

    def setup(d: Path) -> None:
        _train(d, argv, 1)
        path = _train_state(d)
        state = torch.load(path, weights_only=True)
        state["rng_data"] = rng_data
        torch.save(state, path)

    return setup


def _run(case: Case, d: Path, capfd, monkeypatch) -> None:
    """Run ``case`` with its setup's own output (a training run's progress) set aside."""
    case.setup(d)
    capfd.readouterr()
    run_case(replace(case, setup=None), d, capfd, monkeypatch)


@pytest.mark.parametrize("name", ["train-stylegan", "train-dcgan", "finetune-sd"])
def test_resuming_a_training_run_on_changed_data_is_refused(
    name,
    inputs,
    capfd,
    monkeypatch,
    request,
):
    tiny_sd = request.getfixturevalue("tiny_sd") if name == "finetune-sd" else None
    argv = _command(name, tiny_sd)
    case = Case(
        f"{name}-resume-after-the-input-changed",
        (*argv, "--train-steps", "2"),
        "was trained on other data",
        setup=_interrupted_then_changed(argv),
    )
    _run(case, inputs, capfd, monkeypatch)


@pytest.mark.parametrize("name", ["train-stylegan", "train-dcgan", "finetune-sd"])
def test_no_resume_starts_over_and_replaces_the_earlier_runs_checkpoints(
    name,
    tmp_path,
    request,
):
    tiny_sd = request.getfixturevalue("tiny_sd") if name == "finetune-sd" else None
    rng = np.random.default_rng(1)
    write_volume(tmp_path / "v.tif", rng.integers(0, 4000, (4, 64, 64)).astype(np.uint16))
    argv = _command(name, tiny_sd)
    _train(tmp_path, [*argv, "--keep-checkpoints", "0"], 3)  # checkpoints 1, 2, 3 kept
    _change_the_volume(tmp_path)
    _train(tmp_path, [*argv, "--no-resume"], 2)
    run = tmp_path / "out" / "run"
    kept = sorted(p.name for p in run.glob("checkpoint-*"))
    assert kept and kept[-1] == "checkpoint-0000002", kept  # the new run's, not the old 3
    for name_ in kept:
        record = json.loads((run / name_ / "checkpoint.json").read_text())
        volume = read_volume(tmp_path / "v.tif").data
        from napari_scigen.core.io.identity import array_identity

        assert record["source"]["content"] == array_identity(volume)
    # and the same data resumes
    _train(tmp_path, argv, 3)
    assert (run / "checkpoint-0000003").is_dir()


def test_a_checkpoint_written_before_content_identities_resumes_on_the_same_layout(tmp_path):
    from napari_scigen.core.validation import InvalidInputError
    from napari_scigen.engines._training.resume import check_resume_source

    volume = np.zeros((2, 8, 8), np.uint16)
    old = {"source": {"shape": [2, 8, 8], "dtype": "uint16"}}
    check_resume_source(old, "0123456789abcdef", volume, tmp_path)
    with pytest.raises(InvalidInputError, match=r"\[2, 8, 8\] uint16 -> \[2, 8, 4\] uint16"):
        check_resume_source(old, "0123456789abcdef", volume[:, :, :4], tmp_path)


_GARBAGE_RNG = [
    pytest.param(torch.tensor([1, 2, 3], dtype=torch.uint8), id="too-short"),
    pytest.param(torch.zeros(5056, dtype=torch.float32), id="wrong-dtype"),
    pytest.param("garbage", id="text"),
]


@pytest.mark.parametrize("rng_data", _GARBAGE_RNG)
def test_a_lora_checkpoint_with_a_damaged_rng_state_is_refused(
    rng_data,
    tiny_sd,
    inputs,
    capfd,
    monkeypatch,
):
    argv = _command("finetune-sd", tiny_sd)
    case = Case(
        "lora-checkpoint-rng-garbage",
        (*argv, "--train-steps", "2"),
        "random-generator state is missing or damaged",
        setup=_damaged_rng(argv, rng_data),
    )
    _run(case, inputs, capfd, monkeypatch)


def _unet_of_the_wrong_shape(tiny_sd: Path):
    """Setup: a copy of the tiny SD folder whose UNet ``conv_in.weight`` has half its filters."""

    def setup(d: Path) -> None:
        from safetensors.torch import load_file, save_file

        target = d / "sd"
        shutil.copytree(tiny_sd, target)
        weights = target / "unet" / "diffusion_pytorch_model.safetensors"
        tensors = load_file(str(weights))
        tensors["conv_in.weight"] = tensors["conv_in.weight"][: tensors["conv_in.weight"].shape[0] // 2].clone()  # fmt: skip
        save_file(tensors, str(weights))

    return setup


def test_sd_weights_of_the_wrong_shape_get_one_line_from_the_command_line(
    tiny_sd,
    inputs,
    capfd,
    monkeypatch,
):
    argv = [a if a != str(tiny_sd) else "{d}/sd" for a in _command("finetune-sd", tiny_sd)]
    case = Case(
        "sd-unet-weights-of-the-wrong-shape",
        (*argv, "--train-steps", "1"),
        "weights do not match its config",
        setup=_unet_of_the_wrong_shape(tiny_sd),
    )
    _run(case, inputs, capfd, monkeypatch)


def _slice_folder(d: Path) -> None:
    """Setup: ``sl/``, the first four slices of ``v.tif`` as one file each."""
    import tifffile

    (d / "sl").mkdir()
    for index, plane in enumerate(read_volume(d / "v.tif").data[:4]):
        tifffile.imwrite(d / "sl" / f"s{index:03d}.tif", plane)


_INTO_THE_INPUT = [
    ("train-dcgan", "sl", "{d}/sl", "is the input"),
    ("train-dcgan", "sl", "{d}/sl/run", "is inside the input slice folder"),
    ("train-stylegan", "s.ome.zarr", "{d}/s.ome.zarr", "is the input"),
    ("train-stylegan", "sl", "{d}/sl/run", "is inside the input slice folder"),
    ("finetune-sd", "sl", "{d}/sl/adapter", "is inside the input slice folder"),
    ("finetune-sd", "v.tif", "{d}", "contains the input"),
]


@pytest.mark.parametrize(("name", "source", "output", "fragment"), _INTO_THE_INPUT)
def test_a_training_run_never_writes_its_checkpoints_into_its_input(
    name,
    source,
    output,
    fragment,
    inputs,
    capfd,
    monkeypatch,
):
    argv = [a for a in _command(name, Path("{d}/no-model")) if a != "-o"]
    argv = [output if a == "{d}/out/run" else a.replace("v.tif", source) for a in argv]
    argv.insert(2, "-o")
    case = Case(
        f"{name}-into-{source}", (*argv, "--train-steps", "1"), fragment, setup=_slice_folder
    )
    _run(case, inputs, capfd, monkeypatch)


@pytest.mark.parametrize("name", ["train-stylegan", "train-dcgan", "finetune-sd"])
def test_the_former_steps_flag_still_sets_train_steps_with_a_deprecation_warning(name, capsys):
    from napari_scigen.cli import build_parser
    from napari_scigen.core.params import DEST_PREFIX

    with pytest.warns(DeprecationWarning, match="--steps is deprecated, use --train-steps"):
        args = build_parser().parse_args([name, "v.tif", "-o", "run", "--steps", "5"])
    assert getattr(args, DEST_PREFIX + "train_steps") == 5
    assert "--steps is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    shown = capsys.readouterr().out
    assert "--train-steps" in shown and "--steps " not in shown  # the old flag is hidden
