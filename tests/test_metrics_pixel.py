"""SSIM/PSNR: reference values from scikit-image (the reference implementation of
Wang et al. 2004 that napari-scigen wraps) and hand computations for masks and windows."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_scigen.core.validation import InvalidInputError
from napari_scigen.metrics.pixel import psnr, ssim, ssim_map, ssim_report


@pytest.fixture
def pair_uint16():
    rng = np.random.default_rng(0)
    reference = (rng.random((3, 48, 56)) * 20000 + 8000).astype(np.uint16)
    noise = rng.normal(0, 800, reference.shape)
    generated = np.clip(reference + noise, 0, 65535).astype(np.uint16)
    return reference, generated


def test_ssim_of_slice_matches_skimage_with_explicit_uint16_range(pair_uint16):
    reference, generated = pair_uint16
    expected = structural_similarity(reference[0], generated[0], data_range=65535)
    result = ssim(reference[0], generated[0])
    assert result.values == (pytest.approx(expected, rel=1e-12),)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.data_range == 65535


def test_ssim_with_wang_options_matches_skimage(pair_uint16):
    reference, generated = pair_uint16
    options = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    expected = structural_similarity(reference[1], generated[1], data_range=30000, **options)
    assert ssim(reference[1], generated[1], data_range=30000, **options).value == pytest.approx(
        expected, rel=1e-12
    )


def test_ssim_of_volume_is_per_slice_skimage_and_their_mean(pair_uint16):
    reference, generated = pair_uint16
    expected = [
        structural_similarity(r, g, data_range=65535)
        for r, g in zip(reference, generated, strict=True)
    ]
    result = ssim(reference, generated)
    np.testing.assert_allclose(result.values, expected, rtol=1e-12)
    assert result.value == pytest.approx(np.mean(expected), rel=1e-12)


def test_psnr_matches_skimage_per_slice_and_pooled_over_volume(pair_uint16):
    reference, generated = pair_uint16
    result = psnr(reference, generated)
    expected_slices = [
        peak_signal_noise_ratio(r, g, data_range=65535)
        for r, g in zip(reference, generated, strict=True)
    ]
    np.testing.assert_allclose(result.values, expected_slices, rtol=1e-12)
    assert result.value == pytest.approx(
        peak_signal_noise_ratio(reference, generated, data_range=65535), rel=1e-12
    )


def test_psnr_of_constant_offset_equals_hand_computed_value():
    reference = np.full((32, 32), 1000, dtype=np.uint16)
    generated = reference + np.uint16(100)
    # MSE = 100**2, so PSNR = 10 log10(65535**2 / 100**2) = 20 log10(655.35)
    assert psnr(reference, generated).value == pytest.approx(20 * np.log10(655.35), rel=1e-12)


def test_identical_images_give_ssim_one_and_infinite_psnr(pair_uint16):
    reference, _ = pair_uint16
    assert ssim(reference, reference.copy()).value == pytest.approx(1.0)
    assert psnr(reference, reference.copy()).value == np.inf


def test_window_clips_both_images_and_sets_the_data_range(pair_uint16):
    reference, generated = pair_uint16
    low, high = 10000.0, 20000.0
    clipped_ref = np.clip(reference[0].astype(np.float64), low, high)
    clipped_gen = np.clip(generated[0].astype(np.float64), low, high)
    expected_ssim = structural_similarity(clipped_ref, clipped_gen, data_range=high - low)
    expected_psnr = peak_signal_noise_ratio(clipped_ref, clipped_gen, data_range=high - low)
    assert ssim(reference[0], generated[0], data_range=(low, high)).value == pytest.approx(
        expected_ssim, rel=1e-12
    )
    result = psnr(reference[0], generated[0], data_range=(low, high))
    assert result.value == pytest.approx(expected_psnr, rel=1e-12)
    assert result.window == (low, high)
    assert result.data_range == high - low


def test_float_images_default_to_the_reference_value_span():
    rng = np.random.default_rng(1)
    reference = rng.random((40, 40)).astype(np.float32) * 3.0 + 1.0
    generated = (reference + rng.normal(0, 0.05, reference.shape)).astype(np.float32)
    span = float(reference.max() - reference.min())
    result = ssim(reference, generated)
    assert result.data_range == pytest.approx(span)
    assert result.value == pytest.approx(
        structural_similarity(reference, generated, data_range=span), rel=1e-6
    )


def test_masked_ssim_is_the_map_mean_over_region_interior(pair_uint16):
    reference, generated = pair_uint16
    mask = np.zeros(reference.shape[1:], dtype=np.uint8)
    mask[10:30, 5:40] = 3
    _, full = structural_similarity(reference[2], generated[2], data_range=65535, full=True)
    interior = np.zeros(full.shape, dtype=bool)
    interior[3:-3, 3:-3] = True  # skimage ignores (7 - 1) // 2 border pixels
    inside = full[interior & (mask > 0)].mean()
    outside = full[interior & (mask == 0)].mean()
    assert ssim(reference[2], generated[2], mask=mask, region="inside").value == pytest.approx(
        inside
    )
    assert ssim(reference[2], generated[2], mask=mask, region="outside").value == pytest.approx(
        outside
    )


def test_masked_psnr_uses_the_mse_over_the_region_only():
    reference = np.zeros((3, 20, 20), dtype=np.uint8)
    generated = reference.copy()
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:10] = True
    generated[:, 5:10, 5:10] = 10  # errors only inside the mask
    generated[0, 0, 0] = 255  # one error outside
    inside = psnr(reference, generated, mask=mask, region="inside")
    outside = psnr(reference, generated, mask=mask, region="outside")
    assert inside.value == pytest.approx(10 * np.log10(255**2 / 100))
    outside_mse = 255**2 / (3 * (400 - 25))
    assert outside.value == pytest.approx(10 * np.log10(255**2 / outside_mse))
    assert outside.values[1] == np.inf  # slice 1 is identical outside the mask


def test_ssim_report_computes_regions_and_map_in_one_pass(pair_uint16):
    reference, generated = pair_uint16
    mask = np.zeros(reference.shape, dtype=bool)
    mask[:, :20] = True
    scores, full_map = ssim_report(reference, generated, mask=mask, regions=("inside", "outside"))
    assert scores["inside"].value == pytest.approx(
        ssim(reference, generated, mask=mask, region="inside").value
    )
    assert scores["outside"].value == pytest.approx(
        ssim(reference, generated, mask=mask, region="outside").value
    )
    np.testing.assert_allclose(full_map, ssim_map(reference, generated))


def test_ssim_map_is_float32_with_the_input_shape_and_equals_skimage(pair_uint16):
    reference, generated = pair_uint16
    full_map = ssim_map(reference, generated)
    assert full_map.dtype == np.float32
    assert full_map.shape == reference.shape
    _, expected = structural_similarity(reference[1], generated[1], data_range=65535, full=True)
    np.testing.assert_allclose(full_map[1], expected, rtol=1e-5, atol=1e-6)


def test_metrics_leave_inputs_unchanged(pair_uint16):
    reference, generated = pair_uint16
    before = reference.copy(), generated.copy()
    ssim(reference, generated, data_range=(9000, 20000))
    psnr(reference, generated, data_range=(9000, 20000))
    np.testing.assert_array_equal(reference, before[0])
    np.testing.assert_array_equal(generated, before[1])


def test_shape_mismatch_is_rejected_with_both_shapes():
    with pytest.raises(InvalidInputError, match=r"\(32, 32\).*\(32, 30\)"):
        ssim(np.zeros((32, 32), np.uint8), np.zeros((32, 30), np.uint8))


def test_dtype_mismatch_is_rejected_with_both_dtypes():
    with pytest.raises(InvalidInputError, match="uint16.*float32"):
        psnr(np.zeros((32, 32), np.uint16), np.zeros((32, 32), np.float32))


def test_region_without_mask_is_rejected():
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(InvalidInputError, match="needs a mask"):
        ssim(image, image, region="inside")


def test_bad_window_is_rejected():
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(InvalidInputError, match="low < high"):
        psnr(image, image, data_range=(10, 5))
