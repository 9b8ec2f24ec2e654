"""Every subcommand follows the same conventions (walks the parser, so new commands are held too).

* a command writing files takes ``-o/--output`` and ``--overwrite``, and an existing
  output (``-o``, ``--json``, ``--csv``, ``--export``) is never replaced without it;
* ``-q/--quiet`` on every command that works on data;
* ``--series`` on every command reading a volume;
* ``--device`` is validated: ``--device gpu`` is one clear line and exit 2;
* training commands resume with ``--resume/--no-resume`` (the one spelling).
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import write_volume

#: Commands with their own conventions: batch resumes a store of the same job (--overwrite
#: replaces one of another job); its rows are the batch tests at the end of this file.
OWN_CONVENTIONS = {"batch"}
#: Commands that only print.
READ_ONLY = {"engines", "info", "weights"}
#: Training commands: ``-o`` is a run folder they resume into.
TRAINING = {"train", "train-stylegan", "train-dcgan", "finetune-sd"}
#: Commands writing report files into an ``-o`` folder.
REPORT_FOLDERS = {"validate", "compare", "demo"}

#: A minimal command line per subcommand ({in}, {mask}, {out}: files of the test).
MINIMAL = {
    "interpolate": ["{in}", "--missing", "2"],
    "inpaint": ["{in}", "--mask", "{mask}"],
    "metrics": ["{in}", "{in}"],
    "weights": [],
    "validate": ["{in}"],
    "diffedit": ["{in}", "--mask", "{mask}", "--prompt", "a pore", "--local-files-only"],
    "controlnet": ["{in}", "--local-files-only"],
    "instructpix2pix": ["{in}", "--prompt", "x", "--local-files-only"],
    "ledits": ["{in}", "--prompt", "x", "--local-files-only"],
    "edit": ["{in}", "--method", "ledits", "--prompt", "x", "--local-files-only"],
    "unclip": ["{in}", "--local-files-only"],
    "generate": ["{in}", "--method", "unclip", "--local-files-only"],
    "mask": ["{in}", "--prompt", "x", "--local-files-only"],
    "train": ["{in}", "--method", "dcgan"],
    "sample": ["--method", "dcgan", "--generator", "{in}"],
    "train-stylegan": ["{in}"],
    "sample-stylegan": [],
    "walk-stylegan": [],
    "export-stylegan": ["{folder}"],
    "finetune-sd": ["{in}", "--local-files-only"],
    "train-dcgan": ["{in}"],
    "sample-dcgan": ["--generator", "{in}"],
    "compare": ["{in}", "--engines", "interpolate/linear"],
    "convert": ["{in}"],
    "demo": [],
    "engines": [],
    "info": ["{in}"],
}
#: Where each command writes a file (the flag that names it).
FILE_FLAGS = {
    "metrics": ["--json", "--csv"],
    "weights": ["--json"],
    "train-stylegan": ["-o", "--export"],
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _reads_a_volume(parser: argparse.ArgumentParser) -> bool:
    positional = {a.dest for a in parser._actions if not a.option_strings}
    return bool(positional & {"input", "reference", "path"})


@pytest.fixture
def files(tmp_path):
    volume = (np.arange(6 * 24 * 24) % 4000).reshape(6, 24, 24).astype(np.uint16)
    write_volume(tmp_path / "in.tif", volume)
    mask = np.zeros_like(volume, dtype=np.uint8)
    mask[:, 8:16, 8:16] = 1
    write_volume(tmp_path / "mask.tif", mask)
    (tmp_path / "folder").mkdir()
    return {"in": tmp_path / "in.tif", "mask": tmp_path / "mask.tif", "folder": tmp_path / "folder"}


def _run(argv: list[str]) -> int:
    """``main``'s exit status, also when argparse exits while parsing."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _argv(command: str, files, *extra: str) -> list[str]:
    template = MINIMAL[command]
    return [command, *(part.format(**files) for part in template), *extra]


def test_every_subcommand_is_held_to_the_conventions():
    assert set(_subcommands()) - OWN_CONVENTIONS == set(MINIMAL)


def test_writing_commands_take_output_overwrite_quiet_and_volume_readers_series():
    for name, parser in _subcommands().items():
        if name in OWN_CONVENTIONS:
            continue
        options = _options(parser)
        if _reads_a_volume(parser):
            assert "--series" in options, name
        if name in FILE_FLAGS:
            assert "--overwrite" in options, name
        if name in READ_ONLY:
            continue
        assert {"-q", "--quiet"} <= options, name
        if "-o" not in FILE_FLAGS.get(name, ["-o"]):  # a printed table, saved on request
            continue
        assert {"-o", "--output"} <= options, name
        if name in TRAINING:
            assert {"--resume", "--no-resume"} <= options, name
            assert ("--overwrite" in options) == ("--export" in options), name
        else:
            assert "--overwrite" in options, name


def test_device_gpu_is_one_clear_line_and_exit_2_everywhere(files, tmp_path, capsys):
    checked = []
    for name, parser in _subcommands().items():
        if name in OWN_CONVENTIONS or "--device" not in _options(parser):
            continue
        folder = name in TRAINING | REPORT_FOLDERS
        target = tmp_path / (f"new-{name}" if folder else f"new-{name}.tif")
        output = ["-o", str(target)] if "-o" in _options(parser) else []
        assert _run([*_argv(name, files), *output, "--device", "gpu"]) == 2, name
        err = capsys.readouterr().err
        assert "--device" in err and "'gpu'" in err and "Traceback" not in err, (name, err)
        checked.append(name)
    assert "metrics" in checked and "compare" in checked and "interpolate" in checked


def _refused(argv, existing, capsys) -> None:
    existing.write_bytes(b"keep me")
    assert _run(argv) == 2, argv
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err, (argv, err)
    assert existing.read_bytes() == b"keep me"


def test_no_command_replaces_an_existing_file_without_overwrite(files, tmp_path, capsys):
    for name in _subcommands():
        if (
            name in OWN_CONVENTIONS | TRAINING | REPORT_FOLDERS
            or name not in FILE_FLAGS
            and name in READ_ONLY
        ):
            continue
        for flag in FILE_FLAGS.get(name, ["-o"]):
            suffix = {"--json": ".json", "--csv": ".csv", "--export": ".safetensors"}.get(
                flag, ".tif"
            )
            existing = tmp_path / f"{name}-exists{suffix}"
            _refused([*_argv(name, files), flag, str(existing)], existing, capsys)
    existing = tmp_path / "g.safetensors"
    argv = _argv("train-stylegan", files, "-o", str(tmp_path / "run"), "--export", str(existing))
    _refused(argv, existing, capsys)
    existing.unlink()  # the .json written beside the export is never replaced silently either
    argv = _argv("train-stylegan", files, "-o", str(tmp_path / "run"), "--export", str(existing))
    _refused(argv, existing.with_suffix(".json"), capsys)
    assert not existing.exists() and not (tmp_path / "run").exists()


def test_report_folders_are_not_replaced_without_overwrite(files, tmp_path, capsys):
    reports = {"validate": "validation.csv", "compare": "compare.md", "demo": "rock.tif"}
    for name in REPORT_FOLDERS:
        folder = tmp_path / f"{name}-out"
        folder.mkdir()
        _refused([*_argv(name, files), "-o", str(folder)], folder / reports[name], capsys)


def _batch_tasks() -> dict[str, argparse.ArgumentParser]:
    (action,) = [
        a for a in _subcommands()["batch"]._actions if isinstance(a, argparse._SubParsersAction)
    ]
    return dict(action.choices)


def test_batch_takes_output_overwrite_quiet_series_and_validates_the_device_for_every_task(
    files, tmp_path, capsys
):
    tasks = _batch_tasks()
    assert {"interpolate", "inpaint"} <= set(tasks)
    for task, parser in tasks.items():
        options = _options(parser)
        assert {"-o", "--output", "--overwrite", "-q", "--quiet", "--series"} <= options, task
    argv = ["batch", "interpolate", "linear", str(files["in"]), "--factor", "2"]
    store = tmp_path / "gpu.ome.zarr"
    assert _run([*argv, "-o", str(store), "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "'gpu'" in err and "Traceback" not in err, err
    assert not store.exists()


def test_batch_never_replaces_another_job_without_overwrite(files, tmp_path, capsys):
    store = tmp_path / "out.ome.zarr"
    first = ["batch", "interpolate", "linear", str(files["in"]), "-o", str(store), "-q"]
    assert _run([*first, "--factor", "2"]) == 0
    before = sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file())
    assert _run([*first, "--factor", "3"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err, err
    after = sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file())
    assert after == before


def test_batch_series_reads_the_chosen_series_as_interpolate_does(tmp_path, capsys):
    import tifffile

    from napari_scigen.core.io import read_volume

    path = tmp_path / "multi.tif"
    second = (np.arange(5 * 12 * 12) % 251).reshape(5, 12, 12).astype(np.uint8)
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((4, 16, 16), np.uint8), photometric="minisblack")
        writer.write(second, photometric="minisblack")
    store, single = tmp_path / "s1.ome.zarr", tmp_path / "s1.tif"
    common = [str(path), "--factor", "2", "--series", "1", "-q"]
    assert _run(["batch", "interpolate", "linear", *common, "-o", str(store)]) == 0
    assert _run(["interpolate", *common, "--method", "linear", "-o", str(single)]) == 0
    batch, one = read_volume(store).data, read_volume(single).data
    assert batch.shape == (9, 12, 12)
    np.testing.assert_array_equal(np.asarray(batch), np.asarray(one))
    # another series into the same store is another job: refused, not resumed
    other = ["batch", "interpolate", "linear", str(path), "--factor", "2", "--series", "0"]
    assert _run([*other, "-q", "-o", str(store)]) == 2
    assert "series" in capsys.readouterr().err
