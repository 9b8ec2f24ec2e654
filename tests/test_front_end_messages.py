"""Messages are phrased for every front-end (issue 23, item 7): the core, the engines, the
workflows and the metrics never spell a command-line flag; they name an option as its
keyword argument (``overwrite=True``) and list it in the error's ``options``, and each
front-end respells it: the CLI as its flag (``--overwrite``), a dock as its field label
(tests/_qt/test_dock_messages.py), a script sees the keyword."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_scigen
from napari_scigen._cli.common import cli_message, command_options, flag_spelling
from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import write_zarr
from napari_scigen.core.io.outputs import check_store_output
from napari_scigen.core.params import ParameterError
from napari_scigen.core.validation import InvalidInputError, spell_options

PACKAGE = Path(napari_scigen.__file__).parent
#: Where messages must be front-end neutral.
NEUTRAL = ("core", "engines", "workflows", "metrics", "api.py")
#: A command-line flag (``--overwrite``; not ``--qos=regular``, a SLURM directive).
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w=-])")
#: A command line (``napari-scigen train-dcgan VOLUME -o RUN_DIR``).
COMMAND = re.compile(r"napari-scigen [a-z][a-z-]* [A-Z_]+ -o\b")
#: Strings there that are no message: the module that builds the flags from the
#: declarations, and a ``--help`` group title of the batch command.
NOT_MESSAGES = {
    ("core/params/cli.py", None),
    ("workflows/settings.py", "SLURM profile (--cluster slurm; see docs/scaling.md)"),
}


def _texts(path: Path):
    """``(line, text)`` of every string literal in ``path`` but docstrings and ``help=``
    declarations (an f-string as its literal parts with ``{}`` for each value)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skip.update(id(sub) for sub in ast.walk(node.value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(value) for value in node.values)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            parts = (v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, "".join(parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _flagged() -> list[tuple[str, int, str]]:
    files = []
    for name in NEUTRAL:
        where = PACKAGE / name
        files += [where] if where.is_file() else sorted(where.rglob("*.py"))
    found = []
    for path in files:
        relative = path.relative_to(PACKAGE).as_posix()
        if (relative, None) in NOT_MESSAGES:
            continue
        for line, text in _texts(path):
            if (relative, text) in NOT_MESSAGES:
                continue
            if FLAG.search(text) or COMMAND.search(text):
                found.append((relative, line, text))
    return found


def test_no_message_of_the_core_engines_or_workflows_spells_a_command_line_flag():
    offending = [f"{path}:{line}: {text!r}" for path, line, text in _flagged()]
    assert not offending, (
        "spell the option as its keyword (name=value) and list it in the error's options "
        "(see napari_scigen.core.validation):\n" + "\n".join(offending)
    )


def test_the_scan_finds_a_flag_in_a_message_and_ignores_docstrings_and_help(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Pass ``--overwrite``."""\n'
        'x = param(1, help="see --keep-every")\n'
        "def f(path):\n"
        '    """--series N."""\n'
        '    raise ValueError(f"{path} exists; pass --overwrite to replace it")\n'
        'DIRECTIVE = "--qos=regular"\n'
    )
    texts = [text for _, text in _texts(module)]
    assert [t for t in texts if FLAG.search(t)] == ["{} exists; pass --overwrite to replace it"]


def test_each_front_end_spells_the_options_a_message_names():
    message = "run again with overwrite=True; resume=False starts over; choose one with series=N"
    names = ["overwrite", "resume", "series"]
    assert spell_options(message, names, flag_spelling) == (
        "run again with --overwrite; --no-resume starts over; choose one with --series N"
    )
    precision = "use precision='bfloat16' (or precision='float32')"
    assert spell_options(precision, ["precision"], flag_spelling) == (
        "use --precision bfloat16 (or --precision float32)"
    )
    # only the options the error names: a word that happens to look alike stays
    assert spell_options("read_volume(..., lazy=True)", ["overwrite"], flag_spelling) == (
        "read_volume(..., lazy=True)"
    )


def test_the_cli_uses_the_running_commands_own_flags():
    parser = build_parser()
    stylegan = command_options(parser, "train-stylegan")
    error = InvalidInputError("resume=False starts over", options=["resume"])
    assert cli_message(error, str(error), stylegan) == "--no-resume starts over"
    # batch declares --overwrite/--no-overwrite; a ParameterError's field is its subject
    batch = command_options(parser, "batch")
    error = ParameterError("factor", "must be an integer >= 2, got 1")
    assert cli_message(error, str(error), batch) == "--factor must be an integer >= 2, got 1"
    error = InvalidInputError(
        "out.zarr exists; run again with overwrite=True", options=["overwrite"]
    )
    assert cli_message(error, str(error), batch) == "out.zarr exists; run again with --overwrite"


def test_a_parameter_error_rewrapped_by_a_command_keeps_its_flag():
    from napari_scigen.cli import CliError

    try:
        try:
            raise ParameterError(
                "slurm_account", "is needed with cluster='slurm'", options=["cluster"]
            )
        except ParameterError as error:
            raise CliError(str(error)) from None
    except CliError as wrapped:
        actions = command_options(build_parser(), "batch")
        assert cli_message(wrapped, str(wrapped), actions) == (
            "--slurm-account is needed with --cluster slurm"
        )


def test_a_script_sees_the_keyword_argument_and_the_options_survive_pickling(tmp_path):
    store = tmp_path / "s.ome.zarr"
    write_zarr(store, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InvalidInputError, match="run again with overwrite=True") as caught:
        check_store_output(store, [], overwrite=False)
    assert caught.value.options == ("overwrite",)
    copy = pickle.loads(pickle.dumps(caught.value))  # a Dask worker's error reaches the driver
    assert (str(copy), copy.options) == (str(caught.value), ("overwrite",))
    field = pickle.loads(pickle.dumps(ParameterError("factor", "must be >= 2")))
    assert (field.field, field.reason) == ("factor", "must be >= 2")


def test_the_cli_prints_the_flag_of_an_option_a_core_message_names(tmp_path, capsys):
    volume = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack")
    write_zarr(tmp_path / "s.ome.zarr", volume)
    assert main(["convert", str(tmp_path / "v.tif"), str(tmp_path / "s.ome.zarr")]) == 2
    assert "exists; run again with --overwrite to replace it" in capsys.readouterr().err
    mixed = tmp_path / "mixed.tif"
    tifffile.imwrite(mixed, volume[:2], photometric="minisblack")
    tifffile.imwrite(mixed, volume[:2, :3], photometric="minisblack", append=True)
    assert main(["info", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "choose one with --series N" in err and "series=N" not in err


def test_a_missing_device_is_a_user_error_naming_the_device_option(monkeypatch):
    torch = pytest.importorskip("torch")
    from napari_scigen.core.device import DeviceUnavailableError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="use device='cpu'") as caught:
        resolve_device("cuda")
    assert isinstance(caught.value, InvalidInputError)  # the CLI exits 2, not "unexpected"
    actions = command_options(build_parser(), "interpolate")
    assert cli_message(caught.value, str(caught.value), actions).endswith("use --device cpu")


def test_training_and_learned_weight_refusals_name_their_options_as_the_commands_flags(
    tmp_path, capsys, monkeypatch
):
    pytest.importorskip("torch")
    from napari_scigen.engines.learned import store
    from napari_scigen.engines.learned.params import LearnedInterpolateParams

    volume = (np.arange(4 * 16 * 16) % 251).astype(np.uint8).reshape(4, 16, 16)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack")
    command = ["train", str(tmp_path / "v.tif"), "-o", str(tmp_path / "run"), "-q"]
    assert main([*command, "--method", "dcgan", "--resolution", "32", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "run again with --resolution N, N <= 16, or with --no-crop to resize" in err
    monkeypatch.setattr(store, "default_weights_path", lambda task: tmp_path / "gone.safetensors")
    with pytest.raises(InvalidInputError, match="init='scratch'") as caught:
        store.initial_network(LearnedInterpolateParams(init="default"), "interpolate", 2)
    actions = command_options(build_parser(), "interpolate")
    assert "or run with --init scratch" in cli_message(caught.value, str(caught.value), actions)
    assert (
        main(
            ["interpolate", *command[1:2], "--factor", "2", "--method", "learned"]
            + ["--base-channels", "16", "-o", str(tmp_path / "x.tif"), "-q"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "use --init scratch for another network size" in err and "init=" not in err, err


def test_a_note_the_cli_prints_verbatim_names_no_keyword_argument(tmp_path, capsys):
    volume = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    stacked = tmp_path / "two_series.tif"
    tifffile.imwrite(stacked, volume, photometric="minisblack")
    tifffile.imwrite(stacked, volume, photometric="minisblack", append=True)
    assert main(["info", str(stacked)]) == 0
    out = capsys.readouterr().out
    assert "read as one stack of 4 slices (one series can be chosen instead)" in out
    assert "series=N" not in out
