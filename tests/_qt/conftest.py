"""Widget-test fixtures: a viewer holding a small synthetic rock volume."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_rock():
    from napari_scigen.core.phantoms import make_rock_volume

    return make_rock_volume((12, 96, 96), seed=3)


@pytest.fixture
def rock_viewer(make_napari_viewer, small_rock):
    """A viewer with the small rock volume as layer 'rock' (anisotropic voxels)."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        small_rock.volume.copy(), name="rock", scale=(5.0, 2.5, 2.5), metadata={"voxel_unit": "um"}
    )
    return viewer, layer


@pytest.fixture
def nothreads(monkeypatch):
    """Run widget jobs synchronously (deterministic)."""
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory):
    """One folder for the simulated sample data of the whole test session."""
    return tmp_path_factory.mktemp("sample-cache")


@pytest.fixture(autouse=True)
def _sample_cache_in_tmp(monkeypatch, sample_cache):
    """Keep the sample data cache out of the user's home folder."""
    monkeypatch.setenv("NAPARI_SCIGEN_SAMPLE_CACHE", str(sample_cache))
