"""One registry: every engine is declared once and reaches every front-end from there."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.cli import build_parser, main
from napari_scigen.core.io import read_volume, write_volume
from napari_scigen.core.params import (
    EngineParams,
    add_cli_arguments,
    fields_of,
    param,
    params_from_cli,
    params_to_argv,
)
from napari_scigen.core.progress import Progress
from napari_scigen.core.provenance import make_provenance
from napari_scigen.core.result import EngineResult
from napari_scigen.engines import registry
from napari_scigen.engines.registry import Engine, engine_names, engines, get_engine
from napari_scigen.workflows.validate import validation_methods

ALL_ENGINES = engines()


def _subparser(name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


def _method_choices(command: str) -> list[str]:
    (action,) = [a for a in _subparser(command)._actions if a.dest == "method"]
    return list(action.choices)


def _changed_value(spec):
    """A valid value different from the default, for every kind of field."""
    info = spec.info
    if spec.base is bool:
        return not spec.default
    if info.choices is not None and spec.base is not tuple:
        return next(c for c in info.choices if c != spec.default)
    if spec.base is tuple:
        if spec.item is str:
            return tuple(info.choices[:2]) if info.choices else ("a", "b")
        default = spec.default or ((1,) * (spec.length or 2))
        low = info.min if info.min is not None else 0
        items = sorted(spec.item(low + 1 + i) for i in range(len(default)))
        return tuple(items) if items != list(default) else tuple(x + 1 for x in items)
    if spec.base is str:
        return "value from the test"
    base = spec.default if spec.default is not None else (info.min or 0) + 1
    candidate = spec.base(base) + spec.base(1)
    if info.max is not None and candidate > info.max:
        candidate = spec.base(base) - spec.base(1)
    if info.min is not None and candidate <= info.min:
        candidate = spec.base(info.min) + spec.base(1)
    return candidate


@pytest.mark.parametrize("engine", ALL_ENGINES, ids=lambda e: f"{e.task}-{e.name}")
def test_every_engine_declares_valid_defaults_and_a_loadable_generator(engine):
    assert engine.description and engine.task in registry.TASKS
    params = engine.params_class()
    assert isinstance(params, EngineParams)
    assert all(spec.help for spec in fields_of(engine.params_class))
    if not engine.missing_extras():
        assert callable(engine.load())


@pytest.mark.parametrize("engine", ALL_ENGINES, ids=lambda e: f"{e.task}-{e.name}")
def test_every_engine_declares_capabilities_that_match_its_params(engine):
    # front-ends act on these flags instead of guessing from field names: a flag that
    # disagrees with the params would fill a field that is not there, or skip one that is
    specs = {spec.name: spec for spec in fields_of(engine.params_class)}
    assert engine.accepts_voxel_size == ("voxel_size" in specs)
    assert engine.learns_from_input == ("train_steps" in specs)
    assert engine.outputs_uncertainty == ("uncertainty" in specs)
    if engine.outputs_uncertainty:
        assert isinstance(engine.params_class().uncertainty, bool)


def test_engines_declaring_no_uncertainty_return_no_uncertainty_image():
    volume = np.random.default_rng(0).integers(0, 255, (5, 12, 12)).astype(np.uint8)
    mask = np.zeros(volume.shape, bool)
    mask[:, 4:8, 4:8] = True
    runs = {
        ("interpolate", "linear"): lambda: api.interpolate(volume, method="linear", missing=[2]),
        ("interpolate", "nearest"): lambda: api.interpolate(volume, method="nearest", missing=[2]),
        ("inpaint", "biharmonic"): lambda: api.inpaint(volume, mask, method="biharmonic"),
    }
    for key, run in runs.items():
        assert not get_engine(*key).outputs_uncertainty
        assert "uncertainty" not in run().images, key


@pytest.mark.parametrize("engine", ALL_ENGINES, ids=lambda e: f"{e.task}-{e.name}")
def test_every_engine_params_round_trip_through_cli_flags(engine):
    cls = engine.params_class
    changes = {}
    for spec in fields_of(cls):
        if not spec.info.cli:
            continue
        value = _changed_value(spec)
        try:
            cls.from_mapping({**changes, spec.name: value})
        except Exception:  # a cross-field rule refuses this value: keep the default
            continue
        changes[spec.name] = value
    params = cls.from_mapping(changes)
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser, cls)
    assert params_from_cli(cls, parser.parse_args(params_to_argv(params))) == params


@pytest.mark.parametrize(
    ("command", "task"), [("interpolate", "interpolate"), ("inpaint", "inpaint")]
)
def test_every_registered_engine_is_a_cli_choice_of_its_task_command(command, task):
    assert _method_choices(command) == list(engine_names(task))


def test_every_interpolation_engine_is_a_validate_and_demo_method():
    assert validation_methods() == engine_names("interpolate")


@pytest.mark.parametrize("engine", engines("interpolate"), ids=lambda e: e.name)
def test_interpolation_params_round_trip_through_the_real_interpolate_command(engine, tmp_path):
    changes = {}
    for spec in fields_of(engine.params_class):
        value = _changed_value(spec)
        try:
            engine.params_class.from_mapping({**changes, spec.name: value})
        except Exception:
            continue
        changes[spec.name] = value
    params = engine.params_class.from_mapping(changes)
    argv = ["interpolate", "in.tif", "--factor", "2", "-o", "out.tif", "--method", engine.name]
    args = build_parser().parse_args(argv + params_to_argv(params))
    assert params_from_cli(engine.params_class, args) == params


def test_cli_refuses_flags_of_another_method(tmp_path, capsys):
    data = np.zeros((4, 8, 8), np.uint8)
    write_volume(tmp_path / "v.tif", data)
    argv = ["interpolate", str(tmp_path / "v.tif"), "--factor", "2", "-o", str(tmp_path / "o.tif")]
    assert main([*argv, "--method", "linear", "--flow-num-iter", "3"]) == 2
    assert "--flow-num-iter" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


@dataclass(frozen=True)
class _ShiftParams(EngineParams):
    shift_by: int = param(1, help="grey levels added to the copied slice", min=0, max=100)


def _run_shift(volume, params, *, missing=None, factor=None, cancel=None):
    """A test engine: the lower kept neighbour plus ``offset``."""
    from napari_scigen.engines.interpolation.classical import prepare

    array, plan, out, _, _ = prepare(volume, missing, factor)
    for gap in plan.gaps:
        for target, _t in gap.targets:
            out[target] = array[gap.below] + params.shift_by
            yield Progress(1, 1, "shift")
    return EngineResult(out, make_provenance("interpolate-shift", params, extra=plan.provenance()))


def test_a_newly_registered_engine_reaches_api_cli_and_validate(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(
        Engine(
            "interpolate",
            "shift",
            f"{__name__}:_ShiftParams",
            f"{__name__}:_run_shift",
            "lower neighbour plus an offset (test engine)",
        )
    )
    volume = np.full((5, 4, 4), 10, np.uint16)
    result = api.interpolate(volume, method="shift", missing=[2], shift_by=5)
    assert int(result.data[2, 0, 0]) == 15
    assert "shift" in _method_choices("interpolate") and "shift" in validation_methods()
    write_volume(tmp_path / "v.tif", volume)
    out = tmp_path / "o.tif"
    argv = ["interpolate", str(tmp_path / "v.tif"), "--missing", "2", "--method", "shift"]
    assert main([*argv, "--shift-by", "7", "-o", str(out), "-q"]) == 0
    assert int(read_volume(out).data[2, 0, 0]) == 17


def test_registering_twice_or_an_unknown_task_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(get_engine("interpolate", "linear"))
    with pytest.raises(ValueError, match="unknown task"):
        registry.register(Engine("colorize", "x", "a:b", "a:b", "x"))


def test_an_engine_with_a_missing_extra_says_what_to_install(monkeypatch):
    engine = Engine(
        "interpolate",
        "needs-extra",
        "napari_scigen.engines.interpolation.classical:LinearParams",
        "napari_scigen.engines.interpolation.classical:run_linear",
        "x",
        extras=("a_package_that_is_not_installed",),
        install_hint="pip install a-package",
    )
    with pytest.raises(ImportError, match="pip install a-package"):
        engine.load()


def test_the_docs_engine_table_is_generated_from_the_registry():
    from pathlib import Path

    from napari_scigen._cli.engines import engines_markdown

    docs = Path(__file__).resolve().parents[1] / "docs" / "engines.md"
    text = docs.read_text(encoding="utf-8")
    assert engines_markdown() in text, "regenerate: napari-scigen engines --markdown"
    for engine in engines():
        assert f"`{engine.name}`" in text
