import pytest

from napari_scigen.core.indices import parse_indices


def test_parse_indices_reads_lists_and_ranges():
    assert parse_indices("3, 5,10-12") == (3, 5, 10, 11, 12)


def test_parse_indices_rejects_out_of_range_and_garbage():
    with pytest.raises(ValueError, match=r"\[20\] are outside 0..9"):
        parse_indices("1,20", 10)
    with pytest.raises(ValueError, match="'x'"):
        parse_indices("1,x")
    with pytest.raises(ValueError, match="'5-2'"):
        parse_indices("5-2")
