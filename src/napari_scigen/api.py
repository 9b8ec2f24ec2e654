"""The one route to every engine, for scripts, the CLI, the widgets and the workflows.

For each task there is a *job* function that returns the engine generator (yielding
:class:`~napari_scigen.core.progress.Progress`, returning an
:class:`~napari_scigen.core.result.EngineResult`) and a drained twin that runs it to
completion. The napari widgets run the job functions in a thread worker, the CLI and
scripts call the drained twins, so every front-end gets the same checks, the same
post-processing (voxel size after z upsampling, provenance) and the same results.

Engines are looked up in :mod:`napari_scigen.engines.registry` by task and method
name; parameters are the engine's params dataclass (or a dict of its fields), with
keyword overrides, e.g. ``api.interpolate(v, missing=[3], method="flow",
flow_num_iter=20)``.

Examples
--------
>>> from napari_scigen import api
>>> from napari_scigen.core.phantoms import make_rock_volume
>>> rock = make_rock_volume(shape=(16, 128, 128))
>>> rebuilt = api.interpolate(rock.volume, missing=[4, 8], method="linear")
>>> rebuilt.data.shape
(16, 128, 128)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from .core.indices import check_indices
from .core.params import make_params
from .core.progress import CancelToken, Progress, drain
from .core.result import EngineResult
from .core.validation import InvalidInputError

ProgressCallback = Callable[[Progress], None] | None
Job = Generator[Progress, None, Any]


def engine_params(task: str, method: str, params: Any = None, **overrides: Any):
    """The params dataclass of an engine, from ``params`` and keyword overrides.

    Parameters
    ----------
    task, method : str
        The registered engine (see :func:`napari_scigen.engines.registry.engines`).
    params : params dataclass or dict, optional
        Start from these values instead of the defaults.
    **overrides
        Single fields to replace.

    Raises
    ------
    InvalidInputError
        Unknown method, unknown field or invalid value (naming the field).
    """
    from .engines.registry import get_engine

    return make_params(get_engine(task, method).params_class, params, overrides)


def _stamp(generator: Job, task: str, method: str, post=None) -> Job:
    """Run ``generator``, then record the route in the provenance and post-process."""
    result = yield from generator
    if isinstance(result, EngineResult):
        result.provenance.setdefault("task", task)
        result.provenance.setdefault("method", method)
        if post is not None:
            post(result)
    return result


def _engine_job(
    task: str,
    method: str,
    args: tuple,
    params: Any,
    overrides: dict[str, Any],
    *,
    cancel: CancelToken | None,
    inputs: dict[str, Any],
    optional_inputs: dict[str, Any] | None = None,
    post=None,
) -> Job:
    from .engines.registry import get_engine

    engine = get_engine(task, method)
    checked = make_params(engine.params_class, params, overrides)
    keywords = dict(inputs)
    if keywords.get("slices") is not None:
        keywords["slices"] = check_indices(keywords["slices"], name="slices")
    for name, value in (optional_inputs or {}).items():
        if value is None:
            continue
        if name not in engine.inputs:
            raise InvalidInputError(f"the {method} {task} engine takes no {name!r} input")
        keywords[name] = value
    run = engine.load()
    return _stamp(run(*args, checked, cancel=cancel, **keywords), task, method, post)


# --------------------------------------------------------------------------------------
# interpolate
# --------------------------------------------------------------------------------------


def interpolate_job(
    volume: np.ndarray,
    *,
    method: str = "linear",
    missing: Sequence[int] | None = None,
    factor: int | None = None,
    params: Any = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that rebuilds missing slices, or upsamples z by ``factor``.

    Parameters
    ----------
    volume : numpy.ndarray
        3D volume (Z, Y, X).
    method : str
        A registered interpolation engine (``linear``, ``nearest``, ``flow``,
        ``stylegan``...; see ``napari-scigen engines``).
    missing : sequence of int, optional
        Indices of slices to synthesize (same output shape). Exactly one of
        ``missing`` and ``factor`` is given.
    factor : int, optional
        Upsampling factor along z: ``(n - 1) * factor + 1`` output slices; the
        result's :attr:`~EngineResult.voxel_scale` divides the z voxel size by it.
    params : params dataclass or dict, optional
        The engine's parameters; ``overrides`` replace single fields.
    cancel : CancelToken, optional
        Cooperative cancellation.
    """
    if missing is not None:
        missing = check_indices(missing, name="missing")
    post = None
    if factor is not None:

        def post(result: EngineResult, factor=factor) -> None:
            result.voxel_scale = (1.0 / factor, 1.0, 1.0)

    return _engine_job(
        "interpolate",
        method,
        (volume,),
        params,
        overrides,
        cancel=cancel,
        inputs={"missing": missing, "factor": factor},
        post=post,
    )


def interpolate(
    volume: np.ndarray,
    *,
    method: str = "linear",
    missing: Sequence[int] | None = None,
    factor: int | None = None,
    params: Any = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Rebuild missing slices, or upsample z (drained :func:`interpolate_job`).

    Returns
    -------
    EngineResult
        Kept slices are bit-identical to the input.
    """
    job = interpolate_job(
        volume, method=method, missing=missing, factor=factor, params=params, **overrides
    )
    return drain(job, on_progress=on_progress)


# --------------------------------------------------------------------------------------
# inpaint, mask, edit, generate
# --------------------------------------------------------------------------------------


def inpaint_job(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str = "biharmonic",
    params: Any = None,
    slices: Sequence[int] | None = None,
    control: np.ndarray | None = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that fills the masked pixels of a slice or volume.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume.
    mask : numpy.ndarray
        Non-zero where pixels are replaced (a 2D mask applies to every slice).
    method : str
        A registered inpainting engine (``biharmonic``, ``controlnet``...).
    params : params dataclass or dict, optional
        The engine's parameters; ``overrides`` replace single fields.
    slices : sequence of int, optional
        Slices of a volume to process (default: every slice with a masked pixel).
    control : numpy.ndarray, optional
        A control image for engines that take one (ControlNet).
    cancel : CancelToken, optional
        Cooperative cancellation.
    """
    return _engine_job(
        "inpaint",
        method,
        (image, mask),
        params,
        overrides,
        cancel=cancel,
        inputs={"slices": slices},
        optional_inputs={"control": control},
    )


def inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str = "biharmonic",
    params: Any = None,
    slices: Sequence[int] | None = None,
    control: np.ndarray | None = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Fill masked pixels (drained :func:`inpaint_job`).

    Returns
    -------
    EngineResult
        ``data`` has the input's dtype; pixels outside the mask are bit-identical.
    """
    job = inpaint_job(
        image, mask, method=method, params=params, slices=slices, control=control, **overrides
    )
    return drain(job, on_progress=on_progress)


def mask_job(
    image: np.ndarray,
    *,
    method: str = "diffedit",
    params: Any = None,
    slices: Sequence[int] | None = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that derives an editable mask from the data (e.g. DiffEdit's)."""
    return _engine_job(
        "mask", method, (image,), params, overrides, cancel=cancel, inputs={"slices": slices}
    )


def make_mask(
    image: np.ndarray,
    *,
    method: str = "diffedit",
    params: Any = None,
    slices: Sequence[int] | None = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Derive a mask (drained :func:`mask_job`); ``result.labels`` holds it."""
    job = mask_job(image, method=method, params=params, slices=slices, **overrides)
    return drain(job, on_progress=on_progress)


def edit_job(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    method: str = "diffedit",
    params: Any = None,
    slices: Sequence[int] | None = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that edits the masked region towards a prompt.

    ``mask=None`` lets the engine derive the mask (DiffEdit's automatic mask).
    """
    return _engine_job(
        "edit", method, (image, mask), params, overrides, cancel=cancel, inputs={"slices": slices}
    )


def edit(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    method: str = "diffedit",
    params: Any = None,
    slices: Sequence[int] | None = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Edit the masked region (drained :func:`edit_job`).

    Returns
    -------
    EngineResult
        Same dtype and shape as ``image``; pixels outside the mask are bit-identical.
    """
    job = edit_job(image, mask, method=method, params=params, slices=slices, **overrides)
    return drain(job, on_progress=on_progress)


def generate_job(
    image: np.ndarray,
    *,
    method: str = "controlnet",
    params: Any = None,
    control: np.ndarray | None = None,
    slices: Sequence[int] | None = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that synthesizes new slices conditioned on real ones."""
    return _engine_job(
        "generate",
        method,
        (image,),
        params,
        overrides,
        cancel=cancel,
        inputs={"slices": slices},
        optional_inputs={"control": control},
    )


def generate(
    image: np.ndarray,
    *,
    method: str = "controlnet",
    params: Any = None,
    control: np.ndarray | None = None,
    slices: Sequence[int] | None = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Synthesize new slices (drained :func:`generate_job`)."""
    job = generate_job(
        image, method=method, params=params, control=control, slices=slices, **overrides
    )
    return drain(job, on_progress=on_progress)


# --------------------------------------------------------------------------------------
# train, sample
# --------------------------------------------------------------------------------------


def train_job(
    volume: np.ndarray,
    *,
    out_dir: str,
    method: str = "stylegan",
    params: Any = None,
    resume: bool = True,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that trains a generative model on a volume's slices.

    Parameters
    ----------
    volume : numpy.ndarray
        3D training volume.
    out_dir : str
        Run folder for checkpoints; with ``resume`` training continues from the newest
        checkpoint there, adopting its saved architecture.
    method : str
        A registered training engine.
    params : params dataclass or dict, optional
        The engine's parameters; ``overrides`` replace single fields.
    resume : bool
        Continue from the newest checkpoint in ``out_dir`` when there is one.
    cancel : CancelToken, optional
        Cooperative cancellation (a checkpoint is written).
    """
    if not isinstance(resume, bool):
        raise InvalidInputError(f"resume must be true or false, got {resume!r}")
    return _engine_job(
        "train",
        method,
        (volume,),
        params,
        overrides,
        cancel=cancel,
        inputs={"out_dir": out_dir, "resume": resume},
    )


def train(
    volume: np.ndarray,
    *,
    out_dir: str,
    method: str = "stylegan",
    params: Any = None,
    resume: bool = True,
    on_progress: ProgressCallback = None,
    **overrides: Any,
):
    """Train a generative model (drained :func:`train_job`)."""
    job = train_job(
        volume, out_dir=out_dir, method=method, params=params, resume=resume, **overrides
    )
    return drain(job, on_progress=on_progress)


def sample_job(
    *,
    method: str = "stylegan",
    params: Any = None,
    cancel: CancelToken | None = None,
    **overrides: Any,
) -> Job:
    """The generator that draws new slices from a generative model (random or a walk)."""
    return _engine_job("sample", method, (), params, overrides, cancel=cancel, inputs={})


def sample(
    *,
    method: str = "stylegan",
    params: Any = None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Draw new slices (drained :func:`sample_job`)."""
    return drain(sample_job(method=method, params=params, **overrides), on_progress=on_progress)


# --------------------------------------------------------------------------------------
# metrics (the workflows in napari_scigen.workflows build on these functions)
# --------------------------------------------------------------------------------------


def evaluate_job(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    metrics: str | Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Job:
    """The generator that scores generated data against a reference.

    See :func:`~napari_scigen.metrics.evaluate.run_evaluate` for ``metrics`` and
    ``options`` (``data_range``, ``device``, ``lpips_net``, ``voxel_size``,
    ``prompt``, ``slices``...). Each metric gives its own row, or an error row.
    """
    from .metrics.evaluate import run_evaluate

    if metrics is not None:
        options["metrics"] = metrics
    return run_evaluate(reference, generated, mask=mask, cancel=cancel, **options)


def evaluate(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    metrics: str | Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    on_progress: ProgressCallback = None,
    **options: Any,
) -> EngineResult:
    """Score generated data (drained :func:`evaluate_job`).

    Returns
    -------
    EngineResult
        ``provenance["table"]`` lists one row per metric; ``images`` holds maps.
    """
    job = evaluate_job(reference, generated, metrics=metrics, mask=mask, **options)
    return drain(job, on_progress=on_progress)
