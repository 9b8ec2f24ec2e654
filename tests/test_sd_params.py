"""Stable Diffusion parameters: declared once, validated, and the same through the CLI."""

from __future__ import annotations

import pytest

from napari_scigen.cli import build_parser
from napari_scigen.core.params import fields_of, params_from_cli, params_to_argv
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.sd.params import (
    ControlNetParams,
    DiffEditParams,
    StableDiffusionParams,
    max_context,
)

DIFFEDIT_VALUES = {
    "model": "/data/models/sd15",
    "steps": 7,
    "guidance_scale": 0.1 + 0.2,  # a float whose repr has many digits
    "seed": 42,
    "resolution": 256,
    "context": 16,
    "feather": 0.5,
    "batch_size": 3,
    "device": "cuda:1",
    "local_files_only": True,
    "window_percentiles": (1.0, 98.5),
    "source_prompt": "grains, pores and cracks",
    "prompt": "a large pore",
    "strength": 0.6,
    "mask_encode_strength": 0.3,
    "mask_threshold": 2.5,
    "mask_maps": 4,
    "adapter": "/models/rock-lora",
    "adapter_scale": 0.5,
}
CONTROLNET_VALUES = {
    **{k: v for k, v in DIFFEDIT_VALUES.items() if k in StableDiffusionParams.__dataclass_fields__},
    "steps": 9,
    "controlnet_model": "/data/models/cn-canny",
    "inpaint_controlnet_model": "someone/inpaint-net",
    "prompt": "sandstone, 5 um voxels",
    "negative_prompt": "blurry",
    "conditioning_scale": 0.75,
    "control_start": 0.1,
    "control_end": 0.9,
    "strength": 0.5,
    "count": 3,
    "masked_control": "canny",
    "canny_sigma": 1.5,
    "canny_low": 0.05,
    "canny_high": 0.3,
    "canny_use_quantiles": True,
    "scheduler": "ddim",
}


def test_shared_fields_are_declared_once_in_the_base_class():
    shared = [spec.name for spec in fields_of(StableDiffusionParams)]
    for cls in (DiffEditParams, ControlNetParams):
        names = [spec.name for spec in fields_of(cls)]
        assert names[: len(shared)] == shared
        assert len(names) == len(set(names))
    assert DiffEditParams().steps == 50 and ControlNetParams().steps == 20


def test_widget_only_fields_are_cli_flags_too():
    flags = {spec.flag for spec in fields_of(ControlNetParams) if spec.info.cli}
    assert {"--control-start", "--control-end", "--canny-use-quantiles", "--scheduler"} <= flags
    assert {"--guidance", "--count", "--prompt"} <= flags


@pytest.mark.parametrize(
    ("cls", "values", "command"),
    [
        (DiffEditParams, DIFFEDIT_VALUES, ["diffedit", "in.tif", "--mask", "m.tif"]),
        (ControlNetParams, CONTROLNET_VALUES, ["controlnet", "in.tif", "--mask", "m.tif"]),
    ],
)
def test_params_round_trip_through_the_cli_flags(cls, values, command):
    params = cls(**values)
    for spec in fields_of(cls):  # every flag is exercised
        assert getattr(params, spec.name) != spec.default, spec.name
    argv = [*command, *params_to_argv(params), "-o", "out.tif"]
    args = build_parser().parse_args(argv)
    assert params_from_cli(cls, args) == params
    # with no flags typed, the defaults come back
    bare = build_parser().parse_args([*command, "-o", "out.tif"])
    assert params_from_cli(cls, bare) == cls()


def test_historical_flag_names_still_work():
    args = build_parser().parse_args(
        ["diffedit", "in.tif", "--auto-mask", "--prompt", "a pore", "--guidance", "5",
         "--local-files-only", "-o", "out.tif"]
    )  # fmt: skip
    params = params_from_cli(DiffEditParams, args)
    assert params.prompt == "a pore" and params.guidance_scale == 5.0
    assert params.local_files_only is True


def test_former_field_names_are_deprecated_aliases_for_one_release(capsys):
    from napari_scigen.engines.sd.instructpix2pix import InstructPix2PixParams
    from napari_scigen.engines.sd.ledits import LEditsParams

    with pytest.warns(DeprecationWarning, match="--variants is deprecated, use --count"):
        args = build_parser().parse_args(["controlnet", "in.tif", "--variants", "2", "-o", "o"])
    assert params_from_cli(ControlNetParams, args).count == 2
    assert "--variants is deprecated" in capsys.readouterr().err
    for cls, old in (
        (DiffEditParams, "target_prompt"),
        (InstructPix2PixParams, "instruction"),
        (LEditsParams, "editing_prompt"),
    ):
        with pytest.warns(DeprecationWarning, match=f"{old} is deprecated, use prompt"):
            params = cls(**{old: "a pore"})
        assert params == cls(prompt="a pore")
        with pytest.warns(DeprecationWarning):
            assert getattr(params, old) == "a pore"
        with pytest.warns(DeprecationWarning):
            assert cls.from_mapping({old: "x"}).prompt == "x"
        with pytest.raises(InvalidInputError, match="give only prompt"):
            cls(**{old: "a", "prompt": "b"})
    with pytest.warns(DeprecationWarning, match="n_variants is deprecated, use count"):
        assert ControlNetParams(n_variants=2).replace(n_variants=3).count == 3


def test_cli_values_are_validated_naming_the_flag():
    args = build_parser().parse_args(["controlnet", "in.tif", "--count", "0", "-o", "o.tif"])
    with pytest.raises(InvalidInputError, match="--count must be >= 1"):
        params_from_cli(ControlNetParams, args)


def test_params_validation_messages():
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        StableDiffusionParams(resolution=100, context=8)
    with pytest.raises(InvalidInputError, match=">= 16"):
        DiffEditParams(resolution=8, context=0)
    with pytest.raises(InvalidInputError, match="context"):
        DiffEditParams(resolution=64, context=30)
    assert DiffEditParams(resolution=64, context=max_context(64)).context == 28
    with pytest.raises(InvalidInputError, match="window_percentiles"):
        ControlNetParams(window_percentiles=(60.0, 40.0))
    with pytest.raises(InvalidInputError, match="strength"):
        DiffEditParams(strength=1.5)
    with pytest.raises(InvalidInputError, match="runs no step"):
        DiffEditParams(steps=2, strength=0.4)
    with pytest.raises(InvalidInputError, match="guidance_scale"):
        ControlNetParams(guidance_scale=-1.0)
    with pytest.raises(InvalidInputError, match="mask_threshold"):
        DiffEditParams(mask_threshold=0.0)


def test_controlnet_params_are_validated():
    with pytest.raises(InvalidInputError, match="control_start"):
        ControlNetParams(prompt="x", control_start=0.8, control_end=0.5)
    with pytest.raises(InvalidInputError, match="count"):
        ControlNetParams(prompt="x", count=0)
    with pytest.raises(InvalidInputError, match="scheduler"):
        ControlNetParams(prompt="x", scheduler="euler")
    with pytest.raises(InvalidInputError, match="masked_control"):
        ControlNetParams(masked_control="layer")
    assert ControlNetParams(steps=10, strength=0.55).inpaint_steps == 5
    assert DiffEditParams(steps=10, strength=0.8).edit_steps == 8
