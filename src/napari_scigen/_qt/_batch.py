"""Run an engine on the whole volume from napari: a local Dask cluster, a zarr store, a lazy layer.

:func:`run_on_whole_volume` is what a "run on the whole volume" control calls. On the
GUI thread it puts the inputs on disk (the layer's own file when its data are lazy and
unchanged there, else an OME-Zarr copy beside the output), plans the batch job and
creates the output store (:mod:`napari_scigen.workflows.batch`), and adds the store as
a layer at once: it reads the store's zarr array directly, so it shows zeros where
chunks have not landed yet and fills in as they do (the layer is refreshed after each
chunk). The job itself runs in a napari thread worker (:func:`._runner.start_job`)
that drives a local cluster of worker processes; Cancel stops it, and running the same
job again resumes where it stopped.

Example (inside a widget)::

    run = run_on_whole_volume(
        viewer, layer, task="interpolate", method="flow", params=params, missing=missing
    )
    run.cancel()  # the done chunks stay written
"""

from __future__ import annotations

import importlib
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._napari.layers import source_geometry
from ..core.progress import Progress
from ..workflows.batch import BatchJob, BatchRequest, BatchSummary
from ..workflows.settings import BatchParams
from ._runner import Job, start_job


@dataclass
class WholeVolumeRun:
    """A whole-volume batch job started from napari.

    Attributes
    ----------
    job : BatchJob
        The planned job (``job.store`` is the output OME-Zarr store).
    layer : napari layer
        The output layer; it reads the store and fills in as chunks land.
    runner : Job
        The thread-worker job (``runner.outcome``: running, done, cancelled, error).
    summary : BatchSummary or None
        Set when the job completed.
    landed : bool
        Whether a chunk reported progress (an error before that removes the layer).
    uncertainty_layer : napari layer or None
        The job's uncertainty image once it completed (learned engines, see
        :func:`show_uncertainty`).
    """

    job: BatchJob
    layer: Any
    runner: Job | None = None
    summary: BatchSummary | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    landed: bool = False
    uncertainty_layer: Any = None

    def cancel(self) -> None:
        """Stop the job; finished chunks stay in the store (a rerun resumes)."""
        if self.runner is not None:
            self.runner.cancel()

    @property
    def finished(self) -> bool:
        """Whether the job ended (done, cancelled or failed)."""
        return self.runner is not None and self.runner.finished


#: Libraries a whole-volume start imports (about 1.5 s together on 2 cores): the cluster's,
#: and the ones that write the OME-Zarr store's metadata.
SLOW_IMPORTS = ("distributed", "zarr", "ome_zarr.format", "ome_zarr.writer")
_warm_up: threading.Thread | None = None


def warm_up_whole_volume() -> threading.Thread:
    """Import :data:`SLOW_IMPORTS` on a background thread, once per process.

    A dock with a *Run on the whole volume* button calls it when it is built, so the
    button's click does only the job's own work on the GUI thread (the imports would
    freeze it for about a second). Missing libraries are left for the click to report.
    """
    global _warm_up
    if _warm_up is None:

        def run() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ome-zarr's deprecation warnings
                for name in SLOW_IMPORTS:
                    try:
                        importlib.import_module(name)
                    except ImportError:
                        pass

        _warm_up = threading.Thread(target=run, name="napari-scigen warm-up", daemon=True)
        _warm_up.start()
    return _warm_up


def default_output(layer, method: str) -> Path:
    """Where a whole-volume result goes by default: beside the layer's file, else a temp folder."""
    source = _layer_file(layer)
    stem = _safe_name(layer.name)
    if source is not None and source.parent.is_dir():
        folder = source.parent
    else:
        folder = Path(tempfile.gettempdir()) / "napari-scigen-batch"
        folder.mkdir(exist_ok=True)
    return folder / f"{stem}.{method}.ome.zarr"


#: How many numbered default stores (``NAME.method.2.ome.zarr``...) a dock tries.
MAX_DEFAULT_STORES = 100


def numbered_store(target: Path, number: int) -> Path:
    """``NAME.method.ome.zarr`` -> ``NAME.method.<number>.ome.zarr`` (``1``: ``target``)."""
    if number == 1:
        return target
    for ending in (".ome.zarr", ".zarr"):
        if target.name.endswith(ending):
            return target.with_name(f"{target.name[: -len(ending)]}.{number}{ending}")
    return target.with_name(f"{target.name}.{number}")


def _default_store_job(target: Path, planned: Callable[[Path], BatchJob]) -> BatchJob:
    """The job in the first default store that is free or holds this very job (resumed).

    A dock has no ``overwrite``: a default store holding another job (other settings,
    inputs that changed) is kept, and the result goes to the next numbered store
    (:func:`numbered_store`) instead of refusing with no way forward in the dock.
    """
    from ..core.validation import InvalidInputError
    from ..workflows.batch import prepare_store

    for number in range(1, MAX_DEFAULT_STORES):
        store = numbered_store(target, number)
        if not store.exists():
            return prepare_store(planned(store))
        try:
            return prepare_store(planned(store))  # this very job: resumed
        except InvalidInputError:
            continue  # another job's store: left as it is
    return prepare_store(planned(numbered_store(target, MAX_DEFAULT_STORES)))


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)).strip("_")
    return cleaned or "volume"


def _layer_file(layer) -> Path | None:
    """The file or store the layer was read from, if it is still there."""
    path = getattr(getattr(layer, "source", None), "path", None)
    path = path or (getattr(layer, "metadata", None) or {}).get("source")
    if not path:
        return None
    candidate = Path(str(path))
    return candidate if candidate.exists() else None


def _is_lazy(data) -> bool:
    """Read-only lazy data (dask, zarr, memmap): what napari shows is what is on disk."""
    if isinstance(data, np.memmap):
        return True
    module = type(data).__module__
    return module.startswith(("dask.", "zarr."))


def volume_on_disk(layer, folder: Path, role: str) -> str:
    """A path workers can read the layer's volume from.

    The layer's own file when its data are lazy (so unchanged since they were read);
    otherwise the layer is written to ``folder/.<role>.<name>.ome.zarr`` (replaced each
    time: the layer may have been edited).
    """
    from ..core.io import write_zarr

    source = _layer_file(layer)
    if source is not None and _is_lazy(layer.data):
        return str(source)
    kind = "labels" if type(layer).__name__ == "Labels" else "image"
    target = folder / f".{role}.{_safe_name(layer.name)}.ome.zarr"
    unit = (getattr(layer, "metadata", None) or {}).get("voxel_unit", "pixel")
    write_zarr(
        target,
        np.asarray(layer.data),
        voxel_size=tuple(float(s) for s in layer.scale),
        unit=unit,
        provenance=(layer.metadata or {}).get("provenance"),
        kind=kind,
        levels=1,
    )
    return str(target)


def _store_scale(job: BatchJob, source_layer) -> tuple[float, ...]:
    """The output's voxel scale: the source's, z divided by the upsampling factor."""
    scale = list(float(s) for s in source_layer.scale)
    if job.request.factor is not None:
        scale[0] = scale[0] / int(job.request.factor)
    return tuple(scale)


def _output_layer(viewer, job: BatchJob, source_layer, name: str):
    import zarr

    array = zarr.open_array(str(job.store / "0"), mode="r")
    scale = _store_scale(job, source_layer)
    metadata = {
        "source": str(job.store),
        "voxel_unit": (source_layer.metadata or {}).get("voxel_unit", job.unit),
        "provenance": None,
        "batch_store": str(job.store),
    }
    kwargs = {
        "name": name,
        "metadata": metadata,
        # the source's scale (z divided by the factor), translate and units: one world unit
        **source_geometry(source_layer, array.ndim, scale=tuple(scale)),
    }
    if job.kind == "labels":
        return viewer.add_labels(array, **kwargs)
    contrast = getattr(source_layer, "contrast_limits", None)
    if contrast is not None:
        kwargs["contrast_limits"] = tuple(contrast)
    return viewer.add_image(array, **kwargs)


#: Why a local cluster's worker processes fail to start from a script, in words.
SCRIPT_GUARD_HINT = (
    "the local cluster could not start its worker processes. When napari is started from "
    "a Python script, put the script's code under 'if __name__ == \"__main__\":' (worker "
    "processes import the script again), or run from the napari command or a notebook"
)


def explain_cluster_error(error: BaseException) -> BaseException:
    """``error``, or a ``RuntimeError`` saying what to do when the cluster's worker
    processes could not start (Dask's "Nanny failed to start")."""
    text = str(error)
    if "Nanny failed to start" in text or "freeze_support" in text:
        return RuntimeError(f"{SCRIPT_GUARD_HINT} ({text.splitlines()[0][:120]})")
    return error


def store_layer_name(source_name: str, method: str) -> str:
    """``"<source> whole volume <method>"``: the method last, so napari's layer list, which
    cuts long names in the middle, still tells flow, linear and biharmonic apart."""
    return f"{source_name} whole volume {method}"


def show_store(viewer, job: BatchJob, source_layer, method: str):
    """Add the output store of ``job`` as a layer named by :func:`store_layer_name`.

    A layer already showing the same store (a rerun, which resumes it) is replaced, so a
    rerun never adds a second layer named ``"… [1]"``.
    """
    store = str(job.store)
    for old in [
        layer
        for layer in viewer.layers
        if str((layer.metadata or {}).get("batch_store", "")) == store
    ]:
        viewer.layers.remove(old)
    return _output_layer(viewer, job, source_layer, store_layer_name(source_layer.name, method))


def show_uncertainty(viewer, job: BatchJob, source_layer, method: str):
    """Add the job's uncertainty image, if it made one, as ``"<store layer> uncertainty"``.

    A learned engine trained once writes the per-voxel spread of its predictions into the
    output store (:func:`~napari_scigen.workflows._batch_worker.uncertainty_store`); it is
    shown like a single run's uncertainty (magma, added over the result), replacing a
    layer of the same image from an earlier run. Returns the layer, or ``None``.
    """
    import zarr

    from ..workflows._batch_worker import uncertainty_store
    from ._base import uncertainty_style

    path = uncertainty_store(job.store)
    if not (path / "0").exists():
        return None
    for old in [
        layer
        for layer in viewer.layers
        if str((layer.metadata or {}).get("batch_uncertainty", "")) == str(path)
    ]:
        viewer.layers.remove(old)
    array = zarr.open_array(str(path / "0"), mode="r")
    sample = np.asarray(array[:: max(1, array.shape[0] // 16)])  # the style, not all of it
    return viewer.add_image(
        array,
        name=f"{store_layer_name(source_layer.name, method)} uncertainty",
        metadata={"source": str(path), "batch_uncertainty": str(path)},
        **source_geometry(source_layer, array.ndim, scale=_store_scale(job, source_layer)),
        **uncertainty_style(sample),
    )


def run_on_whole_volume(
    viewer,
    layer,
    *,
    task: str,
    method: str,
    params: Any = None,
    missing=None,
    factor: int | None = None,
    mask_layer=None,
    control_layer=None,
    slices=None,
    output: str | Path | None = None,
    settings: BatchParams | Mapping[str, Any] | None = None,
    workers: int | None = None,
    chunk_slices: int | None = None,
    overwrite: bool | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_finished: Callable[[WholeVolumeRun], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> WholeVolumeRun:
    """Run ``task``/``method`` on the whole volume of ``layer`` and show the result as it lands.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the output layer is added.
    layer : napari.layers.Image
        The 3D input volume.
    task, method, params
        The registered engine and its parameters (dataclass or dict).
    missing, factor
        Interpolation: slices to rebuild, or the z upsampling factor.
    mask_layer, control_layer : napari layer, optional
        The mask (inpaint, edit) and control (ControlNet) volumes.
    slices : sequence of int, optional
        Per-slice engines: slices to process (default all).
    output : str or Path, optional
        The output store (default :func:`default_output`). A store of the same job is
        resumed; one of another job is refused unless ``overwrite``, except the default
        store: the result then goes to the next free numbered one
        (``NAME.method.2.ome.zarr``...), the other job's store is kept.
    settings : BatchParams or mapping, optional
        The batch workflow's options, as ``napari-scigen batch`` declares them (default:
        the declared defaults with no dashboard: a local cluster sized to the machine,
        one stored chunk per task, 2 retries, resume).
    workers, chunk_slices, overwrite : optional
        Override those fields of ``settings`` (``None``: keep them).
    on_progress : callable, optional
        Called on the GUI thread with each :class:`Progress` (after the layer refresh).
    on_finished : callable, optional
        Called on the GUI thread with the run when it completed.
    on_error : callable, optional
        Called on the GUI thread with the error when it failed (default: re-raise
        through napari's error notification).

    Returns
    -------
    WholeVolumeRun

    Raises
    ------
    InvalidInputError
        Bad inputs, params or output, found before anything runs.
    """
    from ..core.params import make_params
    from ..workflows.batch import batch_job, check_cluster_available, plan_batch, prepare_store

    overrides = {"workers": workers, "chunk_slices": chunk_slices, "overwrite": overwrite}
    settings = make_params(
        BatchParams,
        {"dashboard": "off"} if settings is None else settings,
        {name: value for name, value in overrides.items() if value is not None},
    )
    options = settings.cluster_options()
    check_cluster_available(options)
    target = Path(output) if output is not None else default_output(layer, method)
    folder = target.parent
    inputs = {"input": volume_on_disk(layer, folder, "input")}
    if mask_layer is not None:
        inputs["mask"] = volume_on_disk(mask_layer, folder, "mask")
    if control_layer is not None:
        inputs["control"] = volume_on_disk(control_layer, folder, "control")

    def planned(store: Path) -> BatchJob:
        request = BatchRequest(
            task,
            method,
            inputs["input"],
            str(store),
            params=params,
            missing=None if missing is None else tuple(missing),
            factor=factor,
            mask=inputs.get("mask"),
            control=inputs.get("control"),
            slices=None if slices is None else tuple(slices),
            chunk_slices=settings.chunk_slices,
            levels=settings.levels,
        )
        return plan_batch(request)

    if output is None and not settings.overwrite:
        job = _default_store_job(target, planned)
    else:
        job = prepare_store(planned(target), overwrite=settings.overwrite)
    run = WholeVolumeRun(job, show_store(viewer, job, layer, method), inputs=inputs)

    def progress(event: Progress) -> None:
        run.landed = run.landed or event.step > 0
        run.layer.refresh()
        if on_progress is not None:
            on_progress(event)

    def result(summary: BatchSummary) -> None:
        from ..core.io import read_volume

        run.summary = summary
        run.layer.metadata = {
            **run.layer.metadata,
            "provenance": read_volume(job.store, lazy=True).provenance,
        }
        run.layer.refresh()
        run.uncertainty_layer = show_uncertainty(viewer, job, layer, method)
        if on_finished is not None:
            on_finished(run)

    def error(exception: BaseException) -> None:
        exception = explain_cluster_error(exception)
        if not run.landed and run.layer in viewer.layers:
            viewer.layers.remove(run.layer)  # nothing landed: no all-zero layer is left
        else:
            run.layer.refresh()
        if on_error is None:
            raise exception
        on_error(exception)

    run.runner = start_job(
        lambda token: batch_job(job, options=options, retries=settings.retries, cancel=token),
        on_progress=progress,
        on_result=result,
        on_error=error,
        on_cancelled=run.layer.refresh,
        grace=None,  # the local cluster shuts down before another run may start
    )
    return run
