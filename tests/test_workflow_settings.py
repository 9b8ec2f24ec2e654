"""The workflow options (validate, compare, batch, mask tools) come from one declaration each."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import write_volume
from napari_scigen.core.params import fields_of, params_to_argv
from napari_scigen.core.params.cli import format_default
from napari_scigen.workflows.settings import (
    BATCH_GROUPS,
    BatchParams,
    CompareParams,
    ValidateParams,
)


def _subcommand(name: str, parser=None) -> argparse.ArgumentParser:
    parser = parser or build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


@pytest.mark.parametrize(
    ("command", "cls"),
    [("validate", ValidateParams), ("compare", CompareParams), ("batch inpaint", BatchParams)],
)
def test_every_workflow_flag_is_a_declared_field_with_its_help_and_default(command, cls):
    parser = None
    for name in command.split():
        parser = _subcommand(name, parser)
    actions = {flag: a for a in parser._actions for flag in a.option_strings}
    for spec in fields_of(cls):
        action = actions[spec.flag]
        assert action.help.replace("%%", "%").startswith(spec.help)
        assert f"(default: {format_default(spec.default)})" in action.help
        assert action.choices == (list(spec.info.choices) if spec.info.choices else None)
        assert action.dest == "param__" + spec.name


def test_every_batch_option_is_in_one_help_group_and_read_back_from_its_flag():
    grouped = [name for names in BATCH_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(spec.name for spec in fields_of(BatchParams))
    assert len(grouped) == len(set(grouped))
    from napari_scigen._cli.batch import batch_settings_from_args

    base = ["batch", "interpolate", "linear", "v.tif", "--factor", "2", "-o", "o.ome.zarr"]
    assert batch_settings_from_args(build_parser().parse_args(base)) == BatchParams()
    typed = BatchParams(
        overwrite=True,
        chunk_slices=3,
        retries=0,
        cluster="slurm",
        slurm_account="m1",
        slurm_constraint="",
        slurm_prologue=("module load a,b", "echo hi"),
    )
    argv = [*base, *params_to_argv(typed)]
    assert argv.count("--slurm-prologue") == 2  # one line per flag: a line may hold commas
    assert batch_settings_from_args(build_parser().parse_args(argv)) == typed
    assert ValidateParams().methods == "linear,flow"
    assert (ValidateParams().device, CompareParams().device) == ("auto", "auto")


def test_compare_keeps_its_short_n_flag_and_its_former_defaults():
    args = build_parser().parse_args(["compare", "v.tif", "-o", "out", "-n", "3"])
    from napari_scigen._cli.compare import compare_settings_from_args

    settings = compare_settings_from_args(args)
    assert settings.n_slices == 3
    assert (settings.engines, settings.mask_size, settings.train_steps, settings.seed) == (
        "all",
        0.35,
        0,
        0,
    )
    assert settings.engine_params() == {} and settings.allow_downloads is False


@pytest.mark.parametrize(
    ("command", "flags", "fragment"),
    [
        (
            "validate",
            ["--drop-every", "4", "--keep-every", "4"],
            "--keep-every cannot be combined with --drop-every G",
        ),
        ("validate", ["--keep-every", "1"], "--keep-every must be an integer >= 2"),
        ("validate", ["--offset", "0"], "--offset must be >= 1 here"),
        ("validate", ["--metrics", "psnr,nope"], "unknown metrics"),
        ("compare", ["--params", "[1]"], "--params must be a JSON object"),
        ("compare", ["--train-params", "{"], "--train-params is not valid JSON"),
        ("compare", ["--engines", "nope"], "--engines has"),
        ("compare", ["-n", "1"], "--n-slices must be"),
        ("batch", ["--chunk-slices", "0"], "--chunk-slices must be >= 1, got 0"),
        ("batch", ["--retries", "-1"], "--retries must be >= 0, got -1"),
        (
            "batch",
            ["--gpus", "1", "--cluster", "slurm"],
            "choose one of --gpus N and --cluster slurm",
        ),
        ("batch", ["--cluster", "slurm"], "--slurm-account is needed with --cluster slurm"),
    ],
)
def test_a_bad_workflow_option_is_one_line_and_exit_2_before_reading(
    tmp_path, capsys, command, flags, fragment
):
    source = tmp_path / "v.tif"
    write_volume(source, np.zeros((6, 8, 8), np.uint16))
    head = ["batch", "interpolate", "linear"] if command == "batch" else [command]
    argv = [*head, str(source), "-o", str(tmp_path / "out"), "-q", *flags]
    if command == "batch":
        argv += ["--factor", "2"]
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drop_every": 4, "keep_every": 4}, "keep_every cannot be combined with drop_every=G"),
        ({"keep_every": 1}, "keep_every must be an integer >= 2, got 1"),
        ({"drop_every": 3, "offset": 0}, "offset must be >= 1 here, got 0"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda, cuda:N or mps; got 'gpu'"),
    ],
)
def test_the_validate_workflow_checks_its_options_by_their_one_declaration(options, message):
    from napari_scigen.core.params import ParameterError
    from napari_scigen.workflows.validate import run_validation

    with pytest.raises(ParameterError) as raised:
        ValidateParams(**options)
    assert str(raised.value) == message
    job = run_validation(np.zeros((8, 6, 6), np.float32), methods=["linear"], **options)
    with pytest.raises(ParameterError) as raised:
        next(job)
    assert str(raised.value) == message


def test_the_workflow_options_page_is_generated_from_the_declarations():
    from pathlib import Path

    from napari_scigen.workflows.settings import options_markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "workflow_options.md"
    assert page.read_text(encoding="utf-8") == options_markdown()
