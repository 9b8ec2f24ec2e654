"""Parameters declared once: validation, CLI flags and their round trip."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pytest

from napari_scigen.core.params import (
    EngineParams,
    ParameterError,
    add_cli_arguments,
    describe_params,
    fields_of,
    make_params,
    param,
    params_from_cli,
    params_to_argv,
)
from napari_scigen.core.validation import InvalidInputError


@dataclass(frozen=True)
class ExampleParams(EngineParams):
    steps: int = param(50, help="denoising steps", min=1, max=1000)
    lr: float = param(0.0025, help="learning rate", min=0.0, min_exclusive=True)
    scheduler: str = param("ddim", help="sampler", choices=("ddim", "unipc"))
    window: tuple[float, float] = param(
        (0.5, 99.5), help="percentiles", min=0, max=100, increasing=True
    )
    axes: tuple[str, ...] = param(("z",), help="slicing axes", choices=("z", "y", "x"))
    gamma: float | None = param(None, help="R1 weight (none: heuristic)", min=0.0)
    augment: bool = param(True, help="augment the data")
    generator: str | None = param(None, help="generator file", kind="path")
    prompt: str = param("", help="text prompt", flag="text")

    def check(self) -> None:
        if self.steps > 500 and self.scheduler == "unipc":
            raise ParameterError("steps", "must be <= 500 with the unipc scheduler")


def test_fields_are_stored_in_canonical_form():
    params = ExampleParams(steps=np.int64(3), lr=1, window=[1, 2], axes=["z", "x"])
    assert params.steps == 3 and type(params.steps) is int
    assert params.lr == 1.0 and type(params.lr) is float
    assert params.window == (1.0, 2.0) and params.axes == ("z", "x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": True}, "steps must be an integer, got True"),
        ({"steps": 2.0}, "steps must be an integer"),
        ({"steps": 0}, "steps must be >= 1, got 0"),
        ({"steps": 1001}, "steps must be <= 1000"),
        ({"lr": 0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"scheduler": "euler"}, "scheduler must be one of ddim, unipc"),
        ({"window": (1.0,)}, "window must have 2 values"),
        ({"window": (5, 200)}, "window must be <= 100"),
        ({"window": (50, 10)}, r"window must be increasing \(low < high\)"),
        ({"steps": 600, "scheduler": "unipc"}, "steps must be <= 500 with the unipc"),
        ({"axes": ("q",)}, "axes values must be among"),
        ({"axes": "zyx"}, "axes must be a sequence"),
        ({"gamma": -1.0}, "gamma must be >= 0"),
        ({"augment": 1}, "augment must be true or false"),
        ({"steps": None}, "steps must be given"),
    ],
)
def test_invalid_values_raise_parameter_errors_naming_the_field(kwargs, message):
    with pytest.raises(ParameterError, match=message) as caught:
        ExampleParams(**kwargs)
    assert caught.value.field == next(iter(kwargs))
    assert isinstance(caught.value, InvalidInputError)


def test_unknown_fields_and_foreign_params_are_refused():
    with pytest.raises(InvalidInputError, match="unknown parameter.*stepz"):
        ExampleParams.from_mapping({"stepz": 3})
    with pytest.raises(InvalidInputError, match="must be a ExampleParams"):
        make_params(ExampleParams, object())
    assert make_params(ExampleParams, {"steps": 4}, {"lr": 0.5}) == ExampleParams(steps=4, lr=0.5)
    assert ExampleParams().replace(steps=9).steps == 9


def test_every_field_must_be_declared_with_help():
    @dataclass(frozen=True)
    class Undeclared(EngineParams):
        steps: int = 3

    with pytest.raises(TypeError, match="not declared with param"):
        fields_of(Undeclared)


def _parser():
    parser = argparse.ArgumentParser(prog="test", exit_on_error=False)
    add_cli_arguments(parser, ExampleParams)
    return parser


def test_cli_flags_round_trip_every_kind_of_field():
    params = ExampleParams(
        steps=7,
        lr=0.125,
        scheduler="unipc",
        window=(1.5, 98.25),
        axes=("z", "y", "x"),
        gamma=0.3,
        augment=False,
        generator="/data/g.safetensors",
        prompt="a slice of sandstone",
    )
    argv = params_to_argv(params)
    assert "--text" in argv and "--no-augment" in argv
    assert params_from_cli(ExampleParams, _parser().parse_args(argv)) == params
    assert params_to_argv(ExampleParams()) == []
    assert params_from_cli(ExampleParams, _parser().parse_args([])) == ExampleParams()


def test_cli_errors_name_the_flag_not_the_field():
    parser = _parser()
    with pytest.raises(InvalidInputError, match="^--steps must be >= 1, got 0$"):
        params_from_cli(ExampleParams, parser.parse_args(["--steps", "0"]))
    with pytest.raises(InvalidInputError, match="^--window must be increasing"):
        params_from_cli(ExampleParams, parser.parse_args(["--window", "9,1"]))
    # a value the command sets itself keeps the field's name (it is not a typed flag)
    with pytest.raises(InvalidInputError, match="^prompt must be text"):
        params_from_cli(ExampleParams, parser.parse_args([]), prompt=3)
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--steps", "many"])


def test_flags_of_another_engine_are_refused():
    @dataclass(frozen=True)
    class Other(EngineParams):
        seed: int = param(0, help="seed")

    parser = _parser()
    add_cli_arguments(parser, Other)
    with pytest.raises(InvalidInputError, match="--seed do\\(es\\) not apply"):
        params_from_cli(ExampleParams, parser.parse_args(["--seed", "3"]))


def test_describe_params_lists_flags_defaults_and_bounds():
    rows = {row["name"]: row for row in describe_params(ExampleParams)}
    assert rows["steps"]["flag"] == "--steps" and rows["steps"]["bounds"] == ">= 1; <= 1000"
    assert rows["window"]["default"] == "0.5,99.5"
    assert rows["prompt"]["flag"] == "--text"
    assert rows["gamma"]["type"] == "float or none"
