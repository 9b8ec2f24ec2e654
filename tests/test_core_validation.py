import numpy as np
import pytest

from napari_scigen.core.validation import InvalidInputError, check_image, check_mask


def test_check_image_rejects_rgb_with_conversion_hint():
    with pytest.raises(InvalidInputError, match="RGB"):
        check_image(np.zeros((32, 32, 3), np.uint8))


def test_check_image_rejects_nan_and_counts_them():
    data = np.zeros((4, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 0, 0] = np.inf
    with pytest.raises(InvalidInputError, match="2 NaN"):
        check_image(data)


def test_check_image_rejects_wrong_dimensions_and_empty():
    with pytest.raises(InvalidInputError, match="dimensions"):
        check_image(np.zeros(10, np.uint8))
    with pytest.raises(InvalidInputError, match="empty"):
        check_image(np.zeros((0, 4), np.uint8))


def test_check_image_returns_same_array_without_copy():
    data = np.arange(16, dtype=np.uint16).reshape(4, 4)
    assert check_image(data) is data


def test_check_mask_mismatched_shape_names_both_shapes():
    with pytest.raises(InvalidInputError, match=r"\(4, 5\).*\(4, 4\)"):
        check_mask(np.ones((4, 5)), (4, 4))


def test_check_mask_empty_is_an_error_unless_allowed():
    with pytest.raises(InvalidInputError, match="empty"):
        check_mask(np.zeros((4, 4)), (4, 4))
    assert not check_mask(np.zeros((4, 4)), (4, 4), allow_empty=True).any()


def test_check_mask_broadcasts_2d_mask_over_volume():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 2] = 3
    full = check_mask(mask, (5, 4, 4))
    assert full.shape == (5, 4, 4) and full.dtype == bool
    assert full[:, 1, 2].all() and full.sum() == 5
