"""Synthetic microCT phantoms: determinism, ground truth, CT physics and napari sample data."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from skimage.measure import label, regionprops
from skimage.transform import iradon, radon

from napari_scigen._napari._sample_data import fibre_sample, phantom_layers, rock_sample
from napari_scigen.core import phantoms
from napari_scigen.core.phantoms import (
    INTENSITY_OFFSET,
    INTENSITY_PER_ATTENUATION,
    ROCK_ATTENUATION,
    make_fibre_volume,
    make_rock_volume,
    phantom_from_parameters,
)
from napari_scigen.core.validation import InvalidInputError

SMALL = (12, 96, 96)


@pytest.fixture(scope="module")
def small_rock():
    return make_rock_volume(SMALL, seed=5)


@pytest.fixture(scope="module")
def small_fibre():
    return make_fibre_volume((12, 128, 128), seed=5)


def _radial_profile(image: np.ndarray) -> np.ndarray:
    n = image.shape[-1]
    offsets = np.arange(n) - n // 2
    radius = np.rint(np.hypot(offsets[:, None], offsets[None, :])).astype(int)
    return np.bincount(radius.ravel(), image.ravel()) / np.bincount(radius.ravel())


def _all_arrays(phantom):
    return [phantom.volume, phantom.labels, phantom.clean, phantom.ring_mask]


@pytest.mark.parametrize("generator", [make_rock_volume, make_fibre_volume])
def test_same_seed_gives_byte_identical_phantom_and_other_seed_differs(generator):
    first = generator((6, 64, 64), seed=11, ring_artifacts=True)
    again = generator((6, 64, 64), seed=11, ring_artifacts=True)
    other = generator((6, 64, 64), seed=12, ring_artifacts=True)
    for a, b in zip(_all_arrays(first), _all_arrays(again), strict=True):
        assert a.tobytes() == b.tobytes()
    assert first.parameters == again.parameters
    assert not np.array_equal(first.labels, other.labels)
    assert not np.array_equal(first.volume, other.volume)


def test_rock_arrays_have_documented_shapes_dtypes_and_metadata(small_rock):
    rock = small_rock
    assert rock.volume.shape == rock.labels.shape == rock.clean.shape == SMALL
    assert rock.volume.dtype == np.uint16 and rock.clean.dtype == np.uint16
    assert rock.labels.dtype == np.uint8
    assert rock.ring_mask.shape == SMALL[1:] and rock.ring_mask.dtype == bool
    assert set(np.unique(rock.labels)) == {0, 1, 2, 3}
    assert rock.phase_names[1] == "pore"
    assert rock.voxel_size == (2.5, 2.5, 2.5) and rock.unit == "um"
    assert rock.parameters["seed"] == 5 and rock.parameters["generator"] == "make_rock_volume"
    assert rock.volume.flags.writeable  # fresh arrays, nothing cached


def test_outside_reconstruction_circle_is_the_constant_air_value(small_rock):
    n = SMALL[-1]
    outside = ~phantoms._reconstruction_circle(n)
    assert outside.any()
    assert np.all(small_rock.volume[:, outside] == INTENSITY_OFFSET)
    # The sample (label > 0) lies inside the reconstruction circle.
    assert not small_rock.labels[:, outside].any()


def test_clean_scan_follows_the_fixed_intensity_mapping_across_seeds():
    means = []
    for seed in (0, 1):
        rock = make_rock_volume((6, 96, 96), seed=seed, ring_artifacts=False)
        quartz = binary_erosion(rock.labels == 2, iterations=2)
        means.append(rock.clean[quartz].mean())
    expected = INTENSITY_OFFSET + INTENSITY_PER_ATTENUATION * ROCK_ATTENUATION[2]
    assert means[0] == pytest.approx(expected, rel=0.03)
    assert means[1] == pytest.approx(means[0], rel=0.02)


@pytest.mark.parametrize("target", [0.2, 0.35])
def test_rock_porosity_of_labels_is_near_target(target):
    rock = make_rock_volume((16, 96, 96), seed=2, target_porosity=target, photon_count=None)
    assert rock.phase_fractions()["pore"] == pytest.approx(target, abs=0.02)
    assert sum(rock.phase_fractions().values()) == pytest.approx(1.0)


def test_rock_grains_continue_across_slices():
    rock = make_rock_volume((24, 96, 96), seed=4, photon_count=None, ring_artifacts=False)
    inside = rock.labels[0] > 0
    adjacent = [np.mean(rock.labels[z][inside] == rock.labels[z + 1][inside]) for z in range(23)]
    far = np.mean(rock.labels[0][inside] == rock.labels[23][inside])
    assert min(adjacent) > 0.85
    assert far < 0.75  # the structure really changes along z


def test_ring_artifacts_are_at_the_ring_mask_radii_and_absent_without_them():
    shape = (16, 128, 128)
    with_rings = make_rock_volume(shape, seed=3, n_bad_detectors=4)
    without = make_rock_volume(shape, seed=3, ring_artifacts=False)
    # Same rock and same photon noise: only the detector errors differ.
    assert np.array_equal(with_rings.labels, without.labels)
    assert np.array_equal(with_rings.clean, without.clean)
    assert not without.ring_mask.any() and without.parameters["derived"]["ring_radii_px"] == []

    radii = with_rings.parameters["derived"]["ring_radii_px"]
    assert len(radii) == 4
    mask_profile = _radial_profile(with_rings.ring_mask.astype(float))
    assert all(mask_profile[r] == 1.0 for r in radii)

    ringed = np.abs(_radial_profile((with_rings.volume.astype(float) - with_rings.clean).mean(0)))
    plain = np.abs(_radial_profile((without.volume.astype(float) - without.clean).mean(0)))
    limit = shape[-1] // 2 - 1
    off_ring = np.ones(limit, dtype=bool)
    off_ring[:4] = False  # too few pixels near the centre for a stable average
    for r in radii:
        off_ring[max(r - 2, 0) : r + 3] = False
    background = np.median(ringed[:limit][off_ring])
    peaks = [ringed[r - 1 : r + 2].max() for r in radii]
    for r, peak in zip(radii, peaks, strict=True):
        assert peak > 8 * background, f"no ring at radius {r}"
    assert plain[4:limit].max() < 0.25 * min(peaks)

    # In the image, the artifact sits on the ring mask, not beside it.
    sample = phantoms._radius_map(shape[-1]) <= phantoms._sample_radius(shape[-1])
    mask = with_rings.ring_mask
    artifact = np.abs((with_rings.volume.astype(float) - with_rings.clean).mean(0))
    assert artifact[mask & sample].mean() > 4 * artifact[~mask & sample].mean()
    noise = np.abs((without.volume.astype(float) - without.clean).mean(0))
    assert noise[mask & sample].mean() < 1.5 * noise[~mask & sample].mean()


def test_noise_free_scan_without_rings_equals_clean_scan():
    rock = make_rock_volume((4, 64, 64), seed=1, photon_count=None, ring_artifacts=False)
    assert np.array_equal(rock.volume, rock.clean)


def test_vectorised_scan_matches_skimage_radon_and_iradon():
    rock = make_rock_volume(
        (2, 96, 96), seed=3, ring_artifacts=False, photon_count=None, detector_blur_px=0
    )
    lookup = np.array([ROCK_ATTENUATION[k] for k in range(4)])
    theta = np.linspace(0.0, 180.0, rock.parameters["n_angles"], endpoint=False)
    inside = phantoms._reconstruction_circle(96)
    for z in range(2):
        mu = lookup[rock.labels[z]]
        reference = iradon(radon(mu, theta, circle=True), theta, circle=True, filter_name="ramp")
        ours = (rock.clean[z].astype(float) - INTENSITY_OFFSET) / INTENSITY_PER_ATTENUATION
        difference = (ours - reference)[inside]
        assert np.sqrt(np.mean(difference**2)) < 0.05 * reference[inside].std()
        assert np.corrcoef(ours[inside], reference[inside])[0, 1] > 0.998


def test_fibre_fraction_is_near_target(small_fibre):
    fractions = small_fibre.phase_fractions()
    assert fractions["fibre"] == pytest.approx(0.45, abs=0.02)
    assert 0 < fractions["void"] < 0.05
    denser = make_fibre_volume((4, 128, 128), seed=5, fibre_fraction=0.55, photon_count=None)
    assert denser.phase_fractions()["fibre"] == pytest.approx(0.55, abs=0.02)


def test_fibre_cross_sections_are_circular_and_of_the_requested_size(small_fibre):
    fibre = small_fibre
    regions = regionprops(label(fibre.labels[6] == 2, connectivity=1))
    sample_radius = phantoms._sample_radius(128)
    centre = 128 // 2
    interior = [
        r
        for r in regions
        if np.hypot(r.centroid[0] - centre, r.centroid[1] - centre) < sample_radius - 8
    ]
    assert len(interior) > 20
    assert np.median([r.eccentricity for r in interior]) < 0.3
    assert np.median([r.equivalent_diameter_area / 2 for r in interior]) == pytest.approx(
        5.0, abs=0.6
    )


def test_fibres_drift_gradually_along_z(small_fibre):
    labels = small_fibre.labels
    inside = labels[0] > 0
    adjacent = [np.mean(labels[z][inside] == labels[z + 1][inside]) for z in range(11)]
    far = np.mean(labels[0][inside] == labels[11][inside])
    assert min(adjacent) > 0.9
    assert far < min(adjacent)


def test_fibre_rings_are_optional(small_fibre):
    assert not small_fibre.ring_mask.any()
    ringed = make_fibre_volume((2, 64, 64), seed=5, ring_artifacts=True, n_bad_detectors=3)
    assert len(ringed.parameters["derived"]["ring_radii_px"]) == 3 and ringed.ring_mask.any()


def test_phantom_regenerates_from_its_parameters():
    rock = make_rock_volume((4, 64, 64), seed=9, target_porosity=0.25)
    again = phantom_from_parameters(rock.parameters)
    assert again.volume.tobytes() == rock.volume.tobytes()
    assert again.labels.tobytes() == rock.labels.tobytes()


def test_calls_return_independent_arrays():
    first = make_fibre_volume((2, 64, 64), seed=0)
    first.volume[:] = 0
    second = make_fibre_volume((2, 64, 64), seed=0)
    assert second.volume.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 64, 80)}, "square"),
        ({"shape": (4, 16, 16)}, "at least 32"),
        ({"shape": (4, 64)}, "three integers"),
        ({"target_porosity": 0.95}, "target_porosity"),
        ({"grain_radius_range": (10, 5)}, "grain_radius_range"),
        ({"seed": -1}, "seed"),
        ({"photon_count": 0}, "photon_count"),
        ({"n_bad_detectors": 40}, "do not fit"),
    ],
)
def test_invalid_rock_parameters_raise_clear_errors(kwargs, message):
    arguments = {"shape": (2, 64, 64), **kwargs}
    shape = arguments.pop("shape")
    with pytest.raises(InvalidInputError, match=message):
        make_rock_volume(shape, **arguments)


def test_invalid_fibre_parameters_raise_clear_errors():
    with pytest.raises(InvalidInputError, match="fibre_fraction"):
        make_fibre_volume((2, 64, 64), fibre_fraction=0.8)
    with pytest.raises(InvalidInputError, match="fibre_radius"):
        make_fibre_volume((2, 64, 64), fibre_radius=20)


def test_phantom_layers_carry_scale_provenance_and_writeable_labels(small_rock):
    layers = phantom_layers(small_rock, material="rock", engine="sample-rock", include_clean=True)
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == [
        "rock microCT (synthetic)",
        "rock phases (ground truth)",
        "rock ring artifacts",
        "rock microCT clean reference (synthetic)",
    ]
    assert [kind for *_, kind in layers] == ["image", "labels", "labels", "image"]
    for data, kwargs, _ in layers:
        assert data.shape == SMALL
        assert kwargs["scale"] == small_rock.voxel_size
        assert kwargs["metadata"]["voxel_unit"] == "um"
        assert kwargs["metadata"]["provenance"]["engine"] == "sample-rock"
        assert kwargs["metadata"]["provenance"]["seed"] == 5
    rings = layers[2][0]
    assert rings.dtype == np.uint8 and rings.flags.writeable
    assert np.array_equal(rings[3] > 0, small_rock.ring_mask)
    low, high = layers[0][1]["contrast_limits"]
    assert 0 <= low < INTENSITY_OFFSET < high <= 65535
    regenerated = phantom_from_parameters(layers[0][1]["metadata"]["provenance"]["params"])
    assert regenerated.volume.tobytes() == small_rock.volume.tobytes()


def test_sample_data_functions_return_documented_layers():
    started = time.perf_counter()
    rock = rock_sample()
    rock_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fibre = fibre_sample()
    fibre_seconds = time.perf_counter() - started
    print(
        f"rock_sample {rock_seconds:.2f} s, fibre_sample {fibre_seconds:.2f} s"
    )  # measured, not asserted

    assert [(kwargs["name"], kind) for _, kwargs, kind in rock] == [
        ("rock microCT (synthetic)", "image"),
        ("rock phases (ground truth)", "labels"),
        ("rock ring artifacts", "labels"),
    ]
    assert [(kwargs["name"], kind) for _, kwargs, kind in fibre] == [
        ("fibre microCT (synthetic)", "image"),
        ("fibre phases (ground truth)", "labels"),
    ]
    assert rock[0][0].shape == fibre[0][0].shape == (64, 256, 256)
    assert rock[0][1]["scale"] == (2.5, 2.5, 2.5) and fibre[0][1]["scale"] == (1.0, 1.0, 1.0)
    assert fibre[0][1]["metadata"]["provenance"]["engine"] == "sample-fibre"
    assert rock[1][1]["visible"] is False and rock[1][1]["opacity"] == pytest.approx(0.4)


def test_phantom_module_imports_neither_torch_nor_napari_nor_qt():
    code = (
        "import sys, napari_scigen.core.phantoms, napari_scigen._napari._sample_data; "
        "bad = [m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sample_layer_tuples_build_real_napari_layers(small_rock):
    layers_module = pytest.importorskip("napari.layers")
    layers = phantom_layers(small_rock, material="rock", engine="sample-rock")
    built = [layers_module.Layer.create(data, kwargs, kind) for data, kwargs, kind in layers]
    assert [type(layer).__name__ for layer in built] == ["Image", "Labels", "Labels"]
    assert all(tuple(layer.scale) == small_rock.voxel_size for layer in built)
    assert built[1].visible is False
