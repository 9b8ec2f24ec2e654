"""The ``validate`` command's options come from one declaration (ValidateParams)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import write_volume
from napari_scigen.core.params import fields_of
from napari_scigen.core.params.cli import format_default
from napari_scigen.workflows.settings import ValidateParams


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


def test_every_validate_flag_is_a_declared_field_with_its_help_and_default():
    actions = {flag: a for a in _subcommand("validate")._actions for flag in a.option_strings}
    for spec in fields_of(ValidateParams):
        action = actions[spec.flag]
        assert action.help.replace("%%", "%").startswith(spec.help)
        assert f"(default: {format_default(spec.default)})" in action.help
        assert action.choices == (list(spec.info.choices) if spec.info.choices else None)
    assert ValidateParams().methods == "linear,flow"
    assert ValidateParams().device == "auto"


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--drop-every", "4", "--keep-every", "4"], "--keep-every cannot be combined"),
        (["--keep-every", "1"], "--keep-every must be an integer >= 2"),
        (["--offset", "0"], "--offset must be >= 1 here"),
        (["--metrics", "psnr,nope"], "unknown metrics"),
    ],
)
def test_a_bad_validate_option_is_one_line_and_exit_2_before_reading(
    tmp_path, capsys, flags, fragment
):
    source = tmp_path / "v.tif"
    write_volume(source, np.zeros((6, 8, 8), np.uint16))
    argv = ["validate", str(source), "-o", str(tmp_path / "out"), "-q", *flags]
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
