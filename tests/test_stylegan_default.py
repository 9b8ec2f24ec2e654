"""The embedded default generator ships with the package, loads safely and makes rock-like slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import drain  # noqa: E402
from napari_scigen.engines.stylegan.default import (  # noqa: E402
    DEFAULT_CONFIG,
    default_generator_path,
    load_default_generator,
)
from napari_scigen.engines.stylegan.interpolate import run_interpolate_stylegan  # noqa: E402
from napari_scigen.engines.stylegan.params import (  # noqa: E402
    StyleGANInterpolateParams,
    StyleGANSampleParams,
)
from napari_scigen.engines.stylegan.sample import run_sample_slices  # noqa: E402

torch.set_num_threads(1)


def test_embedded_generator_files_are_small_and_record_how_they_were_trained():
    path = default_generator_path()
    assert path.is_file(), f"embedded generator missing: {path}"
    assert path.stat().st_size < 5e6
    meta = json.loads(path.with_suffix(".json").read_text())
    record = meta["default_generator"]
    assert record["steps"] == meta["step"] > 0
    assert record["images_seen"] == meta["step"] * meta["train_params"]["batch_size"]
    assert record["wall_seconds"] > 0 and record["hardware"]["device"] == "cpu"
    assert "make_rock_volume" in record["trained_on"]
    assert meta["window"]["dtype"] == "uint16"


def test_embedded_generator_loads_with_its_architecture_and_is_cached():
    generator, meta = load_default_generator("cpu")
    assert generator.config == DEFAULT_CONFIG
    assert not any(p.requires_grad for p in generator.parameters())
    again, _ = load_default_generator("cpu")
    assert again is generator
    assert bool(generator.w_avg.abs().sum() > 0)  # trained: w_avg was tracked


def test_embedded_generator_samples_resemble_the_rock_phantom_intensities():
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.core.stack import Window

    params = StyleGANSampleParams(count=16, seed=0, truncation_psi=1.0, device="cpu")
    result = drain(run_sample_slices(params))
    samples = result.data
    assert samples.shape == (16, 64, 64) and samples.dtype == np.uint16
    meta = load_default_generator("cpu")[1]
    window = Window(**meta["window"])
    unit = window.to_unit(samples)
    assert unit.std(axis=(1, 2)).min() > 0.05  # textured, not flat
    # Crops of the training phantom (inside the sample) for comparison.
    rock = make_rock_volume((4, 256, 256), seed=1).volume
    real = window.to_unit(rock[:, 64:192, 64:192])
    assert abs(float(unit.mean()) - float(real.mean())) < 0.15
    dark_fake = float((unit < 0.15).mean())  # pores and air
    dark_real = float((real < 0.15).mean())
    assert abs(dark_fake - dark_real) < 0.2


def test_default_generator_interpolates_a_phantom_slice_gap():
    from napari_scigen.core.phantoms import make_rock_volume

    volume = make_rock_volume((3, 64, 64), seed=2).volume
    params = StyleGANInterpolateParams(projection_steps=10, device="cpu")
    result = drain(run_interpolate_stylegan(volume, params, missing=[1]))
    assert result.provenance["model"] == "embedded:stylegan_rock64"
    assert np.array_equal(result.data[[0, 2]], volume[[0, 2]])
    assert result.data.dtype == np.uint16 and result.data[1].std() > 0
