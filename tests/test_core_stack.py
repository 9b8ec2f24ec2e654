import numpy as np
import pytest

from napari_scigen.core.stack import Window, data_range_for, dtype_window, percentile_window


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_dtype_window_round_trips_integers_exactly(dtype):
    info = np.iinfo(dtype)
    data = np.linspace(info.min, info.max, 257).astype(dtype)
    window = dtype_window(dtype)
    assert np.array_equal(window.from_unit(window.to_unit(data)), data)


def test_percentile_window_clips_outliers_and_records_method():
    rng = np.random.default_rng(0)
    data = rng.normal(30000, 500, size=(64, 64)).astype(np.uint16)
    data[0, 0] = 65535  # hot pixel
    window = percentile_window(data, 1, 99)
    assert window.high < 65535
    unit = window.to_unit(data)
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert window.method == "percentile 1-99"
    assert window.as_dict()["dtype"] == "uint16"


def test_window_from_unit_returns_original_dtype_within_window():
    window = Window(1000.0, 2000.0, "uint16")
    back = window.from_unit(np.array([0.0, 0.5, 1.0, 2.0], np.float32))
    assert back.dtype == np.uint16
    assert back.tolist() == [1000, 1500, 2000, 2000]


def test_constant_image_gets_invertible_window():
    window = percentile_window(np.full((8, 8), 7, np.uint8))
    assert window.high > window.low


def test_data_range_uses_dtype_span_for_integers_and_extent_for_floats():
    assert data_range_for(np.zeros(3, np.uint16)) == 65535
    assert data_range_for(np.array([-1.0, 3.0], np.float32)) == 4.0
