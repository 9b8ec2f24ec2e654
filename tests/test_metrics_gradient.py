import numpy as np
import pytest

from napari_scigen.core.validation import InvalidInputError
from napari_scigen.metrics.gradient import gmsd


@pytest.fixture
def textured_slice():
    rng = np.random.default_rng(0)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 2)
    return ((field - field.min()) / np.ptp(field) * 50000 + 5000).astype(np.uint16)


def test_gmsd_of_identical_images_is_zero(textured_slice):
    assert gmsd(textured_slice, textured_slice.copy()).value == 0.0


def test_gmsd_ignores_a_constant_intensity_offset(textured_slice):
    shifted = textured_slice + np.uint16(1000)
    assert gmsd(textured_slice, shifted).value == pytest.approx(0.0, abs=1e-12)


def test_gmsd_grows_with_noise(textured_slice):
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (500, 2000, 8000):
        noisy = textured_slice + rng.normal(0, sigma, textured_slice.shape)
        noisy = np.clip(noisy, 0, 65535).astype(np.uint16)
        scores.append(gmsd(textured_slice, noisy, data_range=(5000, 55000)).value)
    assert 0 < scores[0] < scores[1] < scores[2]


def test_gmsd_matches_the_formula_on_a_hand_computed_step_edge():
    # a vertical step 0 -> 255 against a flat image: the flat image has no gradient, so
    # the similarity map is c / (m_ref**2 + c): 1 away from the edge, ~0 next to it
    reference = np.zeros((8, 8), np.uint8)
    reference[:, 4:] = 255
    flat = np.zeros((8, 8), np.uint8)
    score = gmsd(reference, flat, data_range=(0, 255))
    from scipy import ndimage

    small = ndimage.uniform_filter(reference.astype(float), 2, mode="nearest")[::2, ::2]
    kernel = np.array([[1.0, 0.0, -1.0]] * 3) / 3
    magnitude = np.hypot(
        ndimage.correlate(small, kernel, mode="nearest"),
        ndimage.correlate(small, kernel.T, mode="nearest"),
    )
    similarity = 170.0 / (magnitude**2 + 170.0)  # m_gen = 0 everywhere
    assert score.value == pytest.approx(np.std(similarity, ddof=1))
    assert score.value > 0.3


def test_gmsd_scores_volumes_slice_by_slice(textured_slice):
    volume = np.stack([textured_slice, textured_slice])
    other = volume.copy()
    other[1] = textured_slice[:, ::-1]
    result = gmsd(volume, other)
    assert result.values[0] == 0.0 and result.values[1] > 0
    assert result.value == pytest.approx(np.mean(result.values))


def test_gmsd_rejects_mismatched_shapes_and_tiny_slices(textured_slice):
    with pytest.raises(InvalidInputError, match="shape"):
        gmsd(textured_slice, textured_slice[:-1])
    with pytest.raises(InvalidInputError, match="4x4"):
        gmsd(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))
