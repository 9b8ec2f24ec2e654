"""StyleGAN slice interpolation, random slices and latent walks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.stylegan.interpolate import run_interpolate_stylegan  # noqa: E402
from napari_scigen.engines.stylegan.sample import latent_walk, run_sample_slices  # noqa: E402
from stylegan_tiny import textured_volume, tiny_generator  # noqa: E402

torch.set_num_threads(1)

FAST = {"projection_steps": 4, "device": "cpu"}


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_missing_slices_keep_kept_slices_bit_identical_and_dtype(dtype):
    volume = textured_volume(shape=(6, 16, 16), dtype=dtype)
    before = volume.copy()
    result = drain(
        run_interpolate_stylegan(volume, missing=[2, 3], generator=tiny_generator(), **FAST)
    )
    assert result.data.shape == volume.shape and result.data.dtype == volume.dtype
    kept = [0, 1, 4, 5]
    assert np.array_equal(result.data[kept], volume[kept])
    assert np.array_equal(volume, before)  # input untouched
    window = result.provenance["extra"]["window"]
    synthesized = result.data[[2, 3]]
    assert synthesized.min() >= np.floor(window["low"]) and synthesized.max() <= np.ceil(
        window["high"]
    )
    assert result.provenance["engine"] == "interpolate-stylegan"
    assert result.provenance["extra"]["synthesized_indices"] == [2, 3]
    assert result.provenance["extra"]["neighbour_pairs"] == [[1, 4]]


def test_factor_mode_places_original_slice_i_at_i_times_k():
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint8)
    result = drain(run_interpolate_stylegan(volume, factor=3, generator=tiny_generator(), **FAST))
    assert result.data.shape == (7, 16, 16)
    for i in range(3):
        assert np.array_equal(result.data[i * 3], volume[i])


def test_slices_larger_than_the_generator_are_tiled_and_blended():
    volume = textured_volume(shape=(3, 40, 28), dtype=np.uint16)
    result = drain(
        run_interpolate_stylegan(
            volume, missing=[1], generator=tiny_generator(), tile_overlap=4, **FAST
        )
    )
    extra = result.provenance["extra"]
    assert extra["tiles_per_slice"] == 3 * 2  # rows 0,12,24 x cols 0,12 with 16px tiles
    assert result.data.shape == volume.shape
    assert np.array_equal(result.data[[0, 2]], volume[[0, 2]])
    assert result.data[1].std() > 0


def test_slices_smaller_than_the_generator_are_padded_and_cropped_back():
    volume = textured_volume(shape=(3, 10, 12), dtype=np.uint8)
    result = drain(
        run_interpolate_stylegan(volume, missing=[1], generator=tiny_generator(), **FAST)
    )
    assert result.data.shape == (3, 10, 12)


def test_pixel_blend_one_gives_the_linear_interpolation_of_the_window_mapped_slices():
    volume = textured_volume(shape=(3, 16, 16), dtype=np.float32)
    result = drain(
        run_interpolate_stylegan(
            volume,
            missing=[1],
            generator=tiny_generator(),
            pixel_blend=1.0,
            window_percentiles=(0, 100),
            **FAST,
        )
    )
    np.testing.assert_allclose(result.data[1], (volume[0] + volume[2]) / 2, atol=1e-5)


def test_residual_correction_and_slerp_and_noise_modes_run():
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint16)
    outputs = []
    for options in (
        {"residual_correction": True},
        {"slerp": True},
        {"noise": "const"},
        {"noise": "none"},
    ):
        result = drain(
            run_interpolate_stylegan(
                volume, missing=[1], generator=tiny_generator(), **FAST, **options
            )
        )
        outputs.append(result.data[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_interpolation_is_deterministic_for_a_seed():
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint16)
    a = drain(
        run_interpolate_stylegan(volume, missing=[1], generator=tiny_generator(), seed=4, **FAST)
    )
    b = drain(
        run_interpolate_stylegan(volume, missing=[1], generator=tiny_generator(), seed=4, **FAST)
    )
    assert np.array_equal(a.data, b.data)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"missing": [0]}, "boundary"),
        ({"missing": [5]}, "boundary"),
        ({"missing": [9]}, "out of range"),
        ({"missing": [1], "factor": 2}, "exactly one"),
        ({"missing": [1], "pixel_blend": 1.5}, "pixel_blend"),
        ({"missing": [1], "noise": "loud"}, "noise"),
    ],
)
def test_invalid_requests_raise_like_the_classical_engine(options, message):
    volume = textured_volume(shape=(6, 16, 16))
    with pytest.raises(InvalidInputError, match=message):
        drain(run_interpolate_stylegan(volume, generator=tiny_generator(), **FAST, **options))


def test_interpolation_can_be_cancelled_during_projection():
    cancel = CancelToken()
    volume = textured_volume(shape=(3, 16, 16))
    gen = run_interpolate_stylegan(
        volume, missing=[1], generator=tiny_generator(), cancel=cancel, **FAST
    )
    next(gen)
    cancel.cancel()
    with pytest.raises(Cancelled):
        drain(gen)


def test_sampled_slices_are_reproducible_per_seed_and_use_the_window():
    from napari_scigen.core.stack import Window

    generator = tiny_generator()
    five = drain(
        run_sample_slices(generator, n=5, seed=10, batch_size=2, device="cpu", window=None)
    )
    two = drain(run_sample_slices(generator, n=2, seed=13, batch_size=8, device="cpu", window=None))
    assert five.data.shape == (5, 16, 16) and five.data.dtype == np.float32
    np.testing.assert_allclose(five.data[3:], two.data, atol=1e-6)
    window = Window(1000.0, 3000.0, "uint16")
    mapped = drain(run_sample_slices(generator, n=2, seed=13, device="cpu", window=window))
    assert mapped.data.dtype == np.uint16
    assert mapped.data.min() >= 1000 and mapped.data.max() <= 3000
    assert mapped.provenance["seed"] == [13, 14]


def test_latent_walk_returns_smooth_frames_between_two_seeds():
    generator = tiny_generator()
    frames = latent_walk(generator, 1, 2, 6)
    assert frames.shape == (6, 16, 16) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    assert steps.max() <= np.abs(frames[-1] - frames[0]).mean() + 1e-6
    same = latent_walk(generator, 3, 3, 2)
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_each_kept_slice_is_projected_once_even_when_it_bounds_two_gaps(monkeypatch):
    from napari_scigen.engines.stylegan import project

    projected = []
    real = project.run_project

    def spy(generator, slices, **kwargs):
        projected.append(len(slices))
        return real(generator, slices, **kwargs)

    monkeypatch.setattr(project, "run_project", spy)
    volume = textured_volume(shape=(7, 16, 16), dtype=np.uint8)
    events = []
    result = drain(
        run_interpolate_stylegan(
            volume, missing=[1, 3, 5], generator=tiny_generator(), batch_size=2, **FAST
        ),
        on_progress=events.append,
    )
    assert sum(projected) == 4  # slices 0, 2, 4, 6 (one tile each), not 6
    assert sorted(result.provenance["extra"]["projection_final_loss"]) == ["0", "2", "4", "6"]
    assert events[-1].step == events[-1].total
    assert [e.step for e in events] == sorted(e.step for e in events)
