"""``generate``, ``mask``, ``train``, ``sample`` and ``edit --method NAME`` are built from the
registry (issue 23, item 5), and the per-engine commands are thin aliases of them: the same
bytes for the same engine and flags (tiny models built by the tests)."""

from __future__ import annotations

import argparse
import datetime
import json
import types
from pathlib import Path

import numpy as np
import pytest

from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import read_volume, write_volume
from napari_scigen.core.params import fields_of
from napari_scigen.engines.registry import TASKS, engine_names, engines
from registered_engine import registered_constant_sampler

#: Per-engine commands and the ``--method`` they alias.
ALIASES = {
    "controlnet": ("generate", "controlnet"),
    "unclip": ("generate", "unclip"),
    "diffedit": ("edit", "diffedit"),
    "instructpix2pix": ("edit", "instructpix2pix"),
    "ledits": ("edit", "ledits"),
    "train-stylegan": ("train", "stylegan"),
    "train-dcgan": ("train", "dcgan"),
    "finetune-sd": ("train", "sd-lora"),
    "sample-stylegan": ("sample", "stylegan"),
    "walk-stylegan": ("sample", "stylegan-walk"),
    "sample-dcgan": ("sample", "dcgan"),
}


@pytest.fixture
def constant_sampler():
    with registered_constant_sampler() as engine:
        yield engine


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_has_one_command_whose_method_choices_are_its_registered_engines(task):
    parser = _subcommands()[task]
    assert tuple(_option(parser, "--method").choices) == engine_names(task)
    flags = set(parser._option_string_actions)
    for engine in engines(task):
        declared = {spec.flag for spec in fields_of(engine.params_class) if spec.info.cli}
        assert declared <= flags, (task, engine.name, declared - flags)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_each_per_engine_command_takes_its_engines_flags(alias):
    task, method = ALIASES[alias]
    parser = _subcommands()[alias]
    (engine,) = [e for e in engines(task) if e.name == method]
    declared = {spec.flag for spec in fields_of(engine.params_class) if spec.info.cli}
    assert declared <= set(parser._option_string_actions), declared
    assert parser.get_default("method") in (method, None)  # diffedit has its own runner
    assert "--method" not in parser._option_string_actions


def test_a_merged_flag_shows_each_engines_own_default():
    help_text = _option(_subcommands()["train"], "--train-steps").help
    assert "stylegan: " in help_text and "(default: 10000)" in help_text
    assert "dcgan: " in help_text and "(default: 5000)" in help_text
    batch = _option(_subcommands()["sample"], "--batch-size").help
    assert "(default: 16)" in batch and "(default: 64)" in batch


@pytest.fixture
def frozen_clock(monkeypatch):
    """Provenance records the second a file was made: the same second for both runs."""
    import napari_scigen.core.provenance as provenance

    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    clock = types.SimpleNamespace(
        datetime=types.SimpleNamespace(now=lambda tz=None: moment), timezone=datetime.timezone
    )
    monkeypatch.setattr(provenance, "_dt", clock)


def _same_bytes(first: Path, second: Path) -> None:
    """Files (or folders of files) with the same bytes; checkpoint records but their wall time."""
    if first.is_dir():
        names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
        for name in names:
            _same_bytes(first / name, second / name)
        return
    if first.name == "checkpoint.json":  # a record of the run, with its wall time
        records = [json.loads(path.read_text()) for path in (first, second)]
        for record in records:
            record.get("training", {}).pop("wall_seconds")
        assert records[0] == records[1], first
        return
    assert first.read_bytes() == second.read_bytes(), (first, second)


def test_sample_aliases_write_the_same_bytes_as_sample_method(tmp_path, frozen_clock):
    pytest.importorskip("torch")
    common = ["--device", "cpu", "--seed", "4", "--truncation", "0.5", "-q"]
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    assert main(["sample-stylegan", "-n", "2", *common, "-o", str(a)]) == 0
    assert main(["sample", "--method", "stylegan", "--count", "2", *common, "-o", str(b)]) == 0
    _same_bytes(a, b)
    walk = ["--frames", "2", "--seed-b", "3", "--device", "cpu", "-q"]
    c, d = tmp_path / "c.tif", tmp_path / "d.tif"
    assert main(["walk-stylegan", *walk, "-o", str(c)]) == 0
    assert main(["sample", "--method", "stylegan-walk", *walk, "-o", str(d)]) == 0
    _same_bytes(c, d)
    assert read_volume(c).provenance["method"] == "stylegan-walk"


def test_train_aliases_write_the_same_run_folder_as_train_method(tmp_path, frozen_clock, capsys):
    pytest.importorskip("torch")
    from stylegan_tiny import textured_volume

    write_volume(tmp_path / "rock.tif", textured_volume(shape=(4, 24, 24)))
    tiny = ["--train-steps", "2", "--resolution", "16", "--batch-size", "2", "--channels", "4",
            "--z-dim", "8", "--device", "cpu", "-q"]  # fmt: skip
    source = str(tmp_path / "rock.tif")
    assert main(["train-dcgan", source, "-o", str(tmp_path / "a"), *tiny]) == 0
    assert main(["train", source, "--method", "dcgan", "-o", str(tmp_path / "b"), *tiny]) == 0
    _same_bytes(tmp_path / "a", tmp_path / "b")
    assert capsys.readouterr().out.count("trained 2 steps") == 2
    # and the sample of the run, through the alias and the generic command
    for command, name in (
        (["sample-dcgan"], "s1.tif"),
        (["sample", "--method", "dcgan"], "s2.tif"),
    ):
        argv = [*command, "--generator", str(tmp_path / "a"), "--count", "2", "--device", "cpu"]
        assert main([*argv, "-q", "-o", str(tmp_path / name)]) == 0
    _same_bytes(tmp_path / "s1.tif", tmp_path / "s2.tif")


def test_a_flag_of_another_engine_is_one_line_naming_its_engines_and_exit_2(tmp_path, capsys):
    argv = ["sample", "--method", "stylegan-walk", "--count", "2", "-o", str(tmp_path / "x.tif")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--count does not apply to --method stylegan-walk (a flag of stylegan, dcgan)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tif").exists()


@pytest.fixture(scope="module")
def sd_models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from tiny_sd import tiny_models

    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def scan(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(3000, 60000, (2, 64, 64)).astype(np.uint16)
    write_volume(tmp_path / "in.tif", volume, voxel_size=(2.0, 1.5, 1.5))
    return tmp_path / "in.tif"


def _sd_options(models):
    from tiny_sd import TINY_RESOLUTION

    return ["--model", str(models.sd), "--steps", "2", "--resolution", str(TINY_RESOLUTION),
            "--context", "8", "--device", "cpu", "--seed", "3", "-q"]  # fmt: skip


def test_controlnet_writes_the_same_bytes_as_generate_method_controlnet(
    sd_models, scan, frozen_clock
):
    options = ["--prompt", "rock", "--slices", "1", "--scheduler", "ddim",
               "--controlnet-model", str(sd_models.controlnet), *_sd_options(sd_models)]  # fmt: skip
    a, b = scan.parent / "a.tif", scan.parent / "b.tif"
    assert main(["controlnet", str(scan), *options, "-o", str(a)]) == 0
    assert main(["generate", str(scan), "--method", "controlnet", *options, "-o", str(b)]) == 0
    _same_bytes(a, b)
    assert read_volume(b).provenance["task"] == "generate"


def test_mask_writes_the_mask_diffedit_finds_on_its_own(sd_models, scan, frozen_clock):
    options = ["--prompt", "a pore", "--source-prompt", "rock", "--slices", "0",
               *_sd_options(sd_models)]  # fmt: skip
    options[options.index("--model") + 1] = str(sd_models.diffedit)
    folder = scan.parent
    assert main(["mask", str(scan), *options, "-o", str(folder / "mask.tif")]) == 0
    saved = ["--auto-mask", "--save-mask", str(folder / "auto.tif")]
    assert main(["diffedit", str(scan), *options, *saved, "-o", str(folder / "e.tif")]) == 0
    mask, auto = read_volume(folder / "mask.tif"), read_volume(folder / "auto.tif")
    np.testing.assert_array_equal(np.asarray(mask.data), np.asarray(auto.data))
    assert mask.provenance["task"] == "mask" and np.asarray(mask.data).any()


def test_one_registration_puts_an_engine_in_its_tasks_command_with_its_flags(
    constant_sampler, tmp_path
):
    parser = _subcommands()["sample"]
    assert "constant" in _option(parser, "--method").choices
    assert "--value" in parser._option_string_actions
    out = tmp_path / "grey.tif"
    argv = ["sample", "--method", "constant", "--value", "3", "--count", "3", "-q", "-o", str(out)]
    assert main(argv) == 0
    written = read_volume(out)
    assert written.shape == (3, 4, 4) and float(np.asarray(written.data).max()) == 3.0
    assert written.provenance["method"] == "constant" and written.provenance["task"] == "sample"


def test_diffedit_writes_the_same_bytes_as_edit_method_diffedit(sd_models, scan, frozen_clock):
    mask = np.zeros((2, 64, 64), np.uint8)
    mask[:, 20:40, 24:44] = 1
    write_volume(scan.parent / "m.tif", mask, kind="labels")
    options = ["--prompt", "a pore", "--source-prompt", "rock", "--slices", "1",
               "--mask", str(scan.parent / "m.tif"), *_sd_options(sd_models)]  # fmt: skip
    options[options.index("--model") + 1] = str(sd_models.diffedit)
    a, b = scan.parent / "a.tif", scan.parent / "b.tif"
    assert main(["diffedit", str(scan), *options, "-o", str(a)]) == 0
    assert main(["edit", str(scan), "--method", "diffedit", *options, "-o", str(b)]) == 0
    _same_bytes(a, b)
