"""npe2 sample data: synthetic rock and fibre composite microCT volumes with ground truth.

Both are simulated (no download) by :mod:`napari_scigen.core.phantoms` and are the same
bytes on every call. The simulation takes a few seconds, during which napari cannot
draw (sample data is loaded on the GUI thread), so each phantom is simulated once and
kept in a cache folder (:func:`sample_cache_dir`): later openings read it back in a
fraction of a second. The cache key covers the phantom code, the parameters and the
numpy version, so a changed simulation is never read from a stale file.

The layers carry the phantom's real unit (``um``, like the reader's layers), so napari
sees one world and never warns about inconsistent units. The ground-truth layers are
hidden, marked ``metadata["ground_truth"] = True`` (mask pickers never choose them by
default), and the image, not the last-added hidden layer, ends up selected.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.phantoms import Phantom, make_fibre_volume, make_rock_volume
from ..core.provenance import make_provenance
from ..core.stack import percentile_window
from ._reader import _layers_accept_units

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

#: Folder of the cached phantoms; empty or ``off`` disables the cache.
SAMPLE_CACHE_ENV = "NAPARI_SCIGEN_SAMPLE_CACHE"


def phantom_layers(
    phantom: Phantom, *, material: str, engine: str, include_clean: bool = False
) -> list[LayerDataTuple]:
    """LayerDataTuples for a phantom: the CT image, its phases and, if any, its rings.

    Parameters
    ----------
    phantom : Phantom
        A volume from :func:`~napari_scigen.core.phantoms.make_rock_volume` or
        :func:`~napari_scigen.core.phantoms.make_fibre_volume`.
    material : str
        First word of the layer names (``"rock"``, ``"fibre"``).
    engine : str
        Engine name recorded in the provenance (``"sample-rock"``).
    include_clean : bool
        Also return the artifact-free reference scan as a hidden image layer.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: the image ``"<material> microCT (synthetic)"``,
        the labels ``"<material> phases (ground truth)"`` (hidden), then, when the phantom
        has ring artifacts, the labels ``"<material> ring artifacts"`` (hidden, the ring
        mask repeated on every slice), then optionally the clean reference image. Every
        layer has the phantom's scale and unit.
    """
    provenance = make_provenance(engine, phantom.parameters, seed=phantom.parameters["seed"])
    metadata = {"provenance": provenance, "voxel_unit": phantom.unit}
    truth = {**metadata, "ground_truth": True}
    scale = tuple(float(s) for s in phantom.voxel_size)
    geometry: dict[str, Any] = {"scale": scale}
    if phantom.unit != "pixel" and _layers_accept_units():
        geometry["units"] = (phantom.unit,) * len(scale)
    window = percentile_window(phantom.volume, 0.5, 99.5)
    contrast_limits = (float(window.low), float(window.high))
    layers: list[LayerDataTuple] = [
        (
            phantom.volume,
            {
                "name": f"{material} microCT (synthetic)",
                **geometry,
                "metadata": metadata,
                "contrast_limits": contrast_limits,
                "colormap": "gray",
            },
            "image",
        ),
        (
            phantom.labels,
            {
                "name": f"{material} phases (ground truth)",
                **geometry,
                "metadata": {**truth, "phase_names": dict(phantom.phase_names)},
                "visible": False,
                "opacity": 0.4,
            },
            "labels",
        ),
    ]
    if phantom.ring_mask is not None and phantom.ring_mask.any():
        rings = np.repeat(
            phantom.ring_mask[np.newaxis].astype(np.uint8), phantom.volume.shape[0], axis=0
        )
        layers.append(
            (
                rings,
                {
                    "name": f"{material} ring artifacts",
                    **geometry,
                    "metadata": {
                        **truth,
                        "ring_radii_px": phantom.parameters["derived"]["ring_radii_px"],
                    },
                    "visible": False,
                    "opacity": 0.5,
                },
                "labels",
            )
        )
    if include_clean and phantom.clean is not None:
        layers.append(
            (
                phantom.clean,
                {
                    "name": f"{material} microCT clean reference (synthetic)",
                    **geometry,
                    "metadata": truth,
                    "contrast_limits": contrast_limits,
                    "colormap": "gray",
                    "visible": False,
                },
                "image",
            )
        )
    return layers


# -- cache ------------------------------------------------------------------------------


def sample_cache_dir() -> Path | None:
    """Where simulated samples are kept: ``$NAPARI_SCIGEN_SAMPLE_CACHE``, else
    ``$XDG_CACHE_HOME/napari-scigen/samples`` (``~/.cache/...``); ``None`` when the
    variable is set to ``""``, ``0`` or ``off``."""
    configured = os.environ.get(SAMPLE_CACHE_ENV)
    if configured is not None:
        if configured.strip().lower() in ("", "0", "off", "no", "false"):
            return None
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-scigen" / "samples"


def _cache_key(name: str) -> str:
    """Digest of the phantom code, the sample's name and the numpy version."""
    digest = hashlib.sha256(f"{name}|numpy {np.__version__}".encode())
    for source in sorted(Path(make_rock_volume.__code__.co_filename).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:20]


def _save(path: Path, phantom: Phantom) -> None:
    arrays = {"volume": phantom.volume, "labels": phantom.labels}
    if phantom.clean is not None:
        arrays["clean"] = phantom.clean
    if phantom.ring_mask is not None:
        arrays["ring_mask"] = phantom.ring_mask
    record = {
        "phase_names": {str(k): v for k, v in phantom.phase_names.items()},
        "voxel_size": list(phantom.voxel_size),
        "unit": phantom.unit,
        "parameters": phantom.parameters,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, record=np.array(json.dumps(record)), **arrays)
    os.replace(partial, path)  # atomic: a reader never sees half a file


def _load(path: Path) -> Phantom:
    with np.load(path, allow_pickle=False) as stored:
        record = json.loads(str(stored["record"]))
        arrays = {key: stored[key] for key in stored.files if key != "record"}
    return Phantom(
        volume=arrays["volume"],
        labels=arrays["labels"],
        phase_names={int(k): v for k, v in record["phase_names"].items()},
        voxel_size=tuple(record["voxel_size"]),
        unit=record["unit"],
        clean=arrays.get("clean"),
        ring_mask=arrays.get("ring_mask"),
        parameters=record["parameters"],
    )


def cached_phantom(name: str, make: Callable[[], Phantom]) -> Phantom:
    """``make()``, simulated once and then read back from :func:`sample_cache_dir`.

    A cache that cannot be read or written (read-only home, full disk) is skipped.
    """
    folder = sample_cache_dir()
    if folder is None:
        return make()
    path = folder / f"{name}-{_cache_key(name)}.npz"
    if path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):
            pass  # damaged: simulate again and overwrite
    phantom = make()
    try:
        _save(path, phantom)
    except OSError:
        pass
    return phantom


# -- selection --------------------------------------------------------------------------


def _select_image_once_added(image: np.ndarray, hidden: list[np.ndarray]) -> None:
    """Select the image, not a hidden ground-truth layer, once napari has added the sample.

    napari makes each newly added layer the active one, so the last (hidden) tuple would
    end up selected, and painting or the layer controls would act on an invisible layer.
    A sample data function cannot choose the selection, and changing it while napari is
    still adding layers desynchronises the layer list's view; so when napari runs with
    Qt, this schedules the change for when the event loop next runs (after napari has
    added every layer): if a hidden layer of this sample is still the active one, the
    image becomes active.
    """
    if "napari" not in sys.modules:  # scripts and headless use: nothing to select
        return
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return
    try:
        from qtpy.QtCore import QTimer
    except ImportError:  # napari without Qt: no selection to fix
        return
    hidden_ids = {id(array) for array in hidden}

    def select_image() -> None:
        layers = viewer.layers
        active = layers.selection.active
        if active is None or id(active.data) not in hidden_ids:
            return  # the user (or a widget) chose another layer meanwhile
        image_layer = next((layer for layer in layers if layer.data is image), None)
        if image_layer is not None:
            layers.selection.active = image_layer

    QTimer.singleShot(0, select_image)


def _sample(name: str, material: str, engine: str, make: Callable[[], Phantom]):
    layers = phantom_layers(cached_phantom(name, make), material=material, engine=engine)
    _select_image_once_added(layers[0][0], [data for data, _, _ in layers[1:]])
    return layers


def rock_sample() -> list[LayerDataTuple]:
    """Synthetic sandstone-like core, 64 x 256 x 256 at 2.5 um, with ring artifacts.

    Returns
    -------
    list of tuple
        ``rock microCT (synthetic)`` (uint16 image), ``rock phases (ground truth)``
        (labels: 1 pore, 2 quartz, 3 dense mineral) and ``rock ring artifacts`` (labels).
    """
    return _sample("rock", "rock", "sample-rock", make_rock_volume)


def fibre_sample() -> list[LayerDataTuple]:
    """Synthetic unidirectional fibre composite, 64 x 256 x 256 at 1 um.

    Returns
    -------
    list of tuple
        ``fibre microCT (synthetic)`` (uint16 image) and ``fibre phases (ground truth)``
        (labels: 1 matrix, 2 fibre, 3 void).
    """
    return _sample("fibre", "fibre", "sample-fibre", make_fibre_volume)
