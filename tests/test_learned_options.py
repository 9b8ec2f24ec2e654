"""The learned engines' training options each change what is trained (tiny, CPU, seconds).

``adversarial_weight``, ``gradient_weight``, ``planes`` and ``in_plane_fraction`` change
the network's output compared with the same seeded run without them; ``auto_metric``
is the score ``auto`` picks the method by.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from learned_tiny import TINY  # noqa: E402
from napari_scigen import api  # noqa: E402

MISSING = (3, 7, 11)


def _volume() -> np.ndarray:
    z, y, x = np.indices((14, 24, 24))
    blobs = ((y - 8 - 0.3 * z) ** 2 + (x - 9) ** 2 <= 30) | ((y - 16) ** 2 + (x - 15) ** 2 <= 36)
    noise = np.random.default_rng(0).normal(0, 300, z.shape)
    return (20000 + 15000 * blobs + noise).clip(0, 65535).astype(np.uint16)


def _learned(**options):
    volume = _volume()
    result = api.interpolate(
        volume, method="learned", missing=MISSING, force_learned=True, **{**TINY, **options}
    )
    kept = [z for z in range(volume.shape[0]) if z not in MISSING]
    np.testing.assert_array_equal(result.data[kept], volume[kept])  # kept slices untouched
    return result


@pytest.fixture(scope="module")
def plain():
    return _learned()


@pytest.mark.parametrize(
    "options",
    [
        {"adversarial_weight": 0.5, "crop_size": 32},  # 16 px: the discriminator fails
        {"gradient_weight": 2.0},
        {"planes": "xz"},
        {"in_plane_fraction": 1.0},
    ],
    ids=lambda options: next(iter(options)),
)
def test_each_training_option_changes_the_rebuilt_slices_and_is_recorded(plain, options):
    result = _learned(**options)
    if "crop_size" in options:  # the baseline at that crop size
        plain = _learned(crop_size=options["crop_size"])
    name, value = next(iter(options.items()))
    assert all(result.provenance["params"][k] == v for k, v in options.items())
    rebuilt, baseline = result.data[list(MISSING)], plain.data[list(MISSING)]
    assert rebuilt.dtype == baseline.dtype and np.isfinite(rebuilt.astype(float)).all()
    assert not np.array_equal(rebuilt, baseline), f"{name}={value} changed nothing"


@pytest.mark.parametrize("metric", ["psnr", "ssim"])
def test_auto_picks_by_the_requested_metric(metric):
    result = api.interpolate(_volume(), method="auto", missing=MISSING, auto_metric=metric, **TINY)
    extra = result.provenance["extra"]
    assert result.provenance["params"]["auto_metric"] == metric
    assert metric in extra["choice_reason"]
    assert extra["filled_with"] in ("learned", "linear", "flow")


def test_adversarial_training_on_fewer_slices_than_the_crop_runs_without_error():
    """xz/yz planes of a 17-slice volume give crops shorter than 32: no discriminator there."""
    z, y, x = np.indices((17, 40, 40))
    volume = (20000 + 15000 * (((y - 20) ** 2 + (x - 20 + 0.5 * z) ** 2) <= 60)).astype(np.uint16)
    result = api.interpolate(
        volume,
        method="learned",
        missing=(4, 8, 12),
        force_learned=True,
        **{**TINY, "adversarial_weight": 0.5, "crop_size": 32},
    )
    assert result.provenance["params"]["adversarial_weight"] == 0.5
    assert np.isfinite(result.data.astype(float)).all()
    np.testing.assert_array_equal(result.data[[0, 16]], volume[[0, 16]])
