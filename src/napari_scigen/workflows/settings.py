"""The options of the workflows (validate, compare, mask tools, batch), declared once.

:class:`ValidateParams`, :class:`CompareParams`, :class:`MaskToolParams` and
:class:`BatchParams` are the single declarations of what ``napari-scigen validate`` /
``compare`` / ``batch``, the Compare engines dock and the Mask painting dock offer, like
an engine's parameters: their fields become the commands' flags
(:func:`napari_scigen.core.params.add_cli_arguments`, flag = field name) and the docks'
fields (:func:`napari_scigen._qt._fields.widget_for`), and their checks run before any
work (as ``--flag`` errors on the command line).

Examples
--------
>>> ValidateParams().methods
'linear,flow'
>>> ValidateParams(drop_every=1)
Traceback (most recent call last):
...
napari_scigen.core.params.declare.ParameterError: drop_every must be an integer >= 2, got 1
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..core.params import EngineParams, ParameterError, device_param, field_spec, param
from ..core.validation import InvalidInputError
from ..engines.sd.params import StableDiffusionParams
from .compare import COMPARE_METRICS, DEFAULT_EDIT_PROMPT
from .validate import DEFAULT_METHODS, VALIDATION_METRICS


@dataclass(frozen=True)
class ValidateParams(EngineParams):
    """Options of the ``validate`` workflow (``napari-scigen validate``)."""

    drop_every: int | None = param(
        None, help="hold out one interior slice in G (none: 4 unless keep_every is given)"
    )
    keep_every: int | None = param(
        None, help="keep slices 0, G, 2G, ... and rebuild the rest (not with drop_every)"
    )
    offset: int | None = param(
        None,
        help="first held-out slice (with drop_every: default 1) or first kept slice "
        "(with keep_every: default 0)",
    )
    methods: str = param(
        ",".join(DEFAULT_METHODS),
        help="comma-separated interpolation methods (the registered interpolation engines, "
        "see `napari-scigen engines`)",
        kind="text",
    )
    metrics: str = param(
        ",".join(VALIDATION_METRICS),
        help="comma-separated: "
        + ", ".join(VALIDATION_METRICS)
        + " (GMSD needs no weights: the offline substitute when LPIPS' backbone is missing)",
        kind="text",
    )
    device: str = device_param("torch device of LPIPS and every method with a device")

    def check(self) -> None:
        if self.drop_every is not None and self.keep_every is not None:
            raise ParameterError(
                "keep_every", "cannot be combined with drop_every=G", options=["drop_every"]
            )
        for name in ("drop_every", "keep_every"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ParameterError(name, f"must be an integer >= 2, got {value}")
        low = 0 if self.keep_every else 1
        if self.offset is not None and self.offset < low:
            raise ParameterError("offset", f"must be >= {low} here, got {self.offset}")
        for name, names in (("methods", self.method_names), ("metrics", self.metric_names)):
            try:
                names()
            except InvalidInputError as error:
                raise ParameterError(name, f"has {error}") from None

    def method_names(self) -> tuple[str, ...]:
        """The chosen methods, checked against the registered interpolation engines."""
        from .validate import parse_names, validation_methods

        return parse_names(self.methods, validation_methods(), "methods")

    def metric_names(self) -> tuple[str, ...]:
        """The chosen metrics, checked against the ones ``validate`` scores."""
        from .validate import parse_names

        return parse_names(self.metrics, VALIDATION_METRICS, "metrics")


def _json_object(text: str | None, name: str) -> dict[str, Any]:
    """``{}`` for no text, else the JSON object ``text`` holds (checked)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ParameterError(name, f"is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ParameterError(name, "must be a JSON object of engine name -> parameters")
    return value


@dataclass(frozen=True)
class CompareParams(EngineParams):
    """Options of the ``compare`` workflow (``napari-scigen compare``, the Compare dock)."""

    engines: str = param(
        "all",
        help="comma-separated engines ('task/name', bare names when unique), or 'all'",
        kind="text",
    )
    n_slices: int = param(4, help="evenly spaced interior slices compared", min=2, label="slices")
    slices: str | None = param(
        None,
        help="the slices to compare, e.g. '10,20,30' (overrides n_slices)",
        kind="text",
        label="slice list",
    )
    mask: str | None = param(
        None, help="mask TIFF of the inpaint/edit engines (none: a centred square)", kind="path"
    )
    mask_size: float = param(
        0.35,
        help="side of the default square mask, as a fraction of the slice",
        min=0.0,
        max=1.0,
        min_exclusive=True,
        step=0.05,
    )
    prompt: str | None = param(
        None,
        help="description of the data (generate engines, CLIPScore); none = the rock prompt",
        kind="prompt",
    )
    edit_prompt: str = param(DEFAULT_EDIT_PROMPT, help="what the edit engines edit towards")
    metrics: str = param(
        ",".join(COMPARE_METRICS),
        help="comma-separated: " + ", ".join(COMPARE_METRICS),
        kind="text",
    )
    params: str | None = param(
        None,
        help="JSON of engine parameters, e.g. "
        '\'{"edit/diffedit": {"steps": 20}, "flow": {"flow_num_iter": 20}}\'',
        kind="text",
    )
    train_steps: int = param(
        0,
        help="first train each sample engine (DCGAN, StyleGAN) on the volume for this many "
        "steps (0: DCGAN is skipped, StyleGAN uses its embedded rock generator)",
        min=0,
        label="GAN training steps",
    )
    train_params: str | None = param(
        None, help="JSON of training parameters per engine name", kind="text"
    )
    work_dir: str | None = param(
        None, help="keep those training runs here (none: a temporary folder)", kind="dir"
    )
    device: str = device_param("torch device of every engine and metric")
    seed: int = param(0, help="seed of every engine")
    allow_downloads: bool = param(
        False, help="let engines download missing weights (off: offline, missing = skipped)"
    )

    def check(self) -> None:
        from .compare import resolve_engines
        from .validate import parse_names

        for name, check in (
            ("engines", resolve_engines),
            ("metrics", lambda text: parse_names(text, COMPARE_METRICS, "metrics")),
        ):
            try:
                check(getattr(self, name))
            except InvalidInputError as error:
                raise ParameterError(name, f"has {error}") from None
        for name in ("params", "train_params"):
            _json_object(getattr(self, name), name)

    def engine_keys(self) -> tuple[str, ...]:
        """The chosen engines as ``"task/name"`` keys."""
        from .compare import resolve_engines

        return resolve_engines(self.engines)

    def engine_params(self) -> dict[str, Any]:
        """``params`` as a mapping (``{}`` when none)."""
        return _json_object(self.params, "params")

    def training_params(self) -> dict[str, Any]:
        """``train_params`` as a mapping (``{}`` when none)."""
        return _json_object(self.train_params, "train_params")


#: The engines' blend ramp (Stable Diffusion's ``feather``): the Mask dock's default too.
_ENGINE_FEATHER = field_spec(StableDiffusionParams, "feather")


@dataclass(frozen=True)
class MaskToolParams(EngineParams):
    """Settings of the mask tools (the Mask painting dock's grow/shrink, feather,
    threshold and copy controls; the ring detector's are
    :class:`~napari_scigen.core.masks.RingDetectorParams`)."""

    radius: int = param(
        2,
        help="disk radius of Grow and Shrink, per slice",
        min=1,
        max=100,
        label="radius (px)",
        cli=False,
    )
    feather: float = param(
        _ENGINE_FEATHER.default,
        help="width of the soft edge inside the mask over which generated pixels are "
        "blended into the original (the 'feather (px)' of DiffEdit and ControlNet)",
        min=0.0,
        max=200.0,
        step=_ENGINE_FEATHER.info.step or 1.0,
        label="feather (px)",
        cli=False,
    )
    threshold_low: float = param(
        0.0,
        help="lowest image value masked by 'Mask from threshold' (inclusive)",
        step=1.0,
        label="threshold low",
        cli=False,
    )
    threshold_high: float = param(
        0.0,
        help="highest image value masked by 'Mask from threshold' (inclusive)",
        step=1.0,
        label="threshold high",
        cli=False,
    )
    copy_start: int = param(
        0,
        help="first slice (inclusive) that receives the shown slice's mask",
        min=0,
        max=100_000,
        label="copy to slices from",
        cli=False,
    )
    copy_stop: int = param(
        0,
        help="last slice (inclusive) that receives the shown slice's mask",
        min=0,
        max=100_000,
        label="to",
        cli=False,
    )

    def threshold_window(self) -> tuple[float, float]:
        """``(low, high)`` of *Mask from threshold*.

        Raises
        ------
        ParameterError
            When ``threshold_high`` is not above ``threshold_low`` (both default to 0:
            the window is set per image, so the check runs when it is used).
        """
        if self.threshold_high <= self.threshold_low:
            raise ParameterError(
                "threshold_high",
                f"must be above threshold low ({self.threshold_low:g}), "
                f"got {self.threshold_high:g}",
            )
        return self.threshold_low, self.threshold_high


#: ``BatchParams`` fields per ``--help`` group of ``napari-scigen batch`` (in order).
BATCH_GROUPS = {
    "output": ("overwrite", "chunk_slices", "levels", "retries"),
    "cluster": ("workers", "worker_threads", "gpus", "cluster", "scheduler_address", "dashboard"),
    "SLURM profile (--cluster slurm; see docs/scaling.md)": (
        "slurm_account",
        "slurm_qos",
        "slurm_constraint",
        "slurm_partition",
        "slurm_gpus_per_node",
        "slurm_workers_per_node",
        "slurm_cores",
        "slurm_memory",
        "slurm_walltime",
        "slurm_jobs",
        "slurm_prologue",
        "slurm_interface",
        "slurm_local_directory",
    ),
}


@dataclass(frozen=True)
class BatchParams(EngineParams):
    """Options of the ``batch`` workflow (``napari-scigen batch``, *Run on the whole volume*).

    The output store's chunking, retries and where the workers run; the engine's own
    parameters are its params class.
    """

    overwrite: bool = param(
        False, help="start over, replacing the output (off = resume a store of the same job)"
    )
    chunk_slices: int | None = param(
        None,
        help="output slices per task (none = one stored chunk; for a learned interpolation "
        "trained once, the slices one inference tile fills)",
        min=1,
    )
    levels: int = param(1, help="resolution levels of the output", min=1)
    retries: int = param(2, help="retries of a failing chunk", min=0)
    workers: int | None = param(None, help="local worker processes (none = one per core)", min=1)
    worker_threads: int | None = param(
        None, help="torch/OpenMP threads per worker (none = cores / workers)", min=1
    )
    gpus: int | None = param(None, help="local GPUs, one worker each (needs dask-cuda)", min=1)
    cluster: str = param("local", help="where workers run", choices=("local", "slurm"))
    scheduler_address: str | None = param(  # not --scheduler: the SD engines' sampler flag
        None,
        help="attach to a running Dask scheduler: tcp://host:8786 or its --scheduler-file JSON",
        kind="text",
    )
    dashboard: str = param(":8787", help="dashboard address (':0' any port, 'off' none)")
    slurm_account: str | None = param(
        None, help="allocation to charge (#SBATCH -A)", kind="text", gui=False
    )
    slurm_qos: str = param("regular", help="quality of service", gui=False)
    slurm_constraint: str = param("gpu", help="node type ('' for none)", gui=False)
    slurm_partition: str | None = param(
        None, help="partition, where the centre uses them", kind="text", gui=False
    )
    slurm_gpus_per_node: int = param(4, help="GPUs per node, one worker each", min=0, gui=False)
    slurm_workers_per_node: int = param(1, help="workers per CPU-only node", min=1, gui=False)
    slurm_cores: int = param(64, help="cores per job", min=1, gui=False)
    slurm_memory: str = param("200GB", help="memory per job", gui=False)
    slurm_walltime: str = param("01:00:00", help="time limit, HH:MM:SS", gui=False)
    slurm_jobs: int = param(1, help="jobs (nodes) to start", min=1, gui=False)
    slurm_prologue: tuple[str, ...] = param(
        (),
        help="shell line run before the workers start (repeatable), e.g. 'module load python'",
        kind="lines",
        gui=False,
    )
    slurm_interface: str | None = param(
        None, help="network interface of the nodes, e.g. hsn0", kind="text", gui=False
    )
    slurm_local_directory: str | None = param(
        None, help="node-local scratch, e.g. $TMPDIR", kind="text", gui=False
    )

    def check(self) -> None:
        chosen = [
            option
            for option, given in (
                ("gpus=N", self.gpus is not None),
                ("cluster='slurm'", self.cluster == "slurm"),
                ("scheduler_address=ADDRESS", bool(self.scheduler_address)),
            )
            if given
        ]
        if len(chosen) > 1:
            raise InvalidInputError(
                f"choose one of {' and '.join(chosen)}",
                options=["gpus", "cluster", "scheduler_address"],
            )
        if self.cluster == "slurm" and not self.slurm_account:
            raise ParameterError(
                "slurm_account",
                "is needed with cluster='slurm' (the allocation to charge)",
                options=["cluster"],
            )

    def slurm_profile(self):
        """The :class:`~napari_scigen.workflows._batch_cluster.SlurmProfile` of the fields."""
        from ._batch_cluster import SlurmProfile

        return SlurmProfile(
            account=self.slurm_account,
            qos=self.slurm_qos,
            constraint=self.slurm_constraint or None,
            partition=self.slurm_partition,
            gpus_per_node=self.slurm_gpus_per_node,
            workers_per_node=self.slurm_workers_per_node,
            cores_per_node=self.slurm_cores,
            memory=self.slurm_memory,
            walltime=self.slurm_walltime,
            jobs=self.slurm_jobs,
            prologue=self.slurm_prologue,
            local_directory=self.slurm_local_directory,
            interface=self.slurm_interface,
        )

    def cluster_options(self, *, task_tracebacks: bool = False):
        """The :class:`~napari_scigen.workflows._batch_cluster.ClusterOptions` of the fields."""
        from ._batch_cluster import ClusterOptions

        dashboard = (
            None if self.dashboard.strip().lower() in ("off", "none", "") else self.dashboard
        )
        common = {
            "threads": self.worker_threads,
            "dashboard": dashboard,
            "task_tracebacks": task_tracebacks,
        }
        if self.scheduler_address:
            return ClusterOptions("scheduler", scheduler=self.scheduler_address, **common)
        if self.cluster == "slurm":
            return ClusterOptions("slurm", slurm=self.slurm_profile(), **common)
        if self.gpus is not None:
            return ClusterOptions("cuda", gpus=self.gpus, **common)
        return ClusterOptions("local", workers=self.workers, **common)


#: Each workflow's declaration, where it appears and whether a dock shows its fields, in
#: the order of the docs page.
WORKFLOW_SETTINGS = (
    ("metrics", "napari-scigen metrics, the Metrics dock", "metrics.settings:MetricsParams", True),
    ("validate", "napari-scigen validate", "ValidateParams", False),
    ("compare", "napari-scigen compare, the Compare engines dock", "CompareParams", True),
    (
        "batch",
        "napari-scigen batch; Run on the whole volume (run_on_whole_volume(settings=...))",
        "BatchParams",
        False,
    ),
    ("mask tools", "the Mask painting dock", "MaskToolParams", True),
    ("ring detector", "the Mask painting dock", "core.masks:RingDetectorParams", True),
)


def _settings_class(where: str) -> type:
    if ":" not in where:
        return globals()[where]
    import importlib

    module, name = where.split(":")
    return getattr(importlib.import_module(f"napari_scigen.{module}"), name)


def options_markdown() -> str:
    """``docs/workflow_options.md``: one table per workflow, from its declaration.

    Regenerate with ``python -c "from napari_scigen.workflows.settings import
    options_markdown as m; print(m(), end='')" > docs/workflow_options.md`` (a test
    checks the page is current).
    """
    from ..core.params import describe_params, fields_of

    lines = [
        "# Workflow options",
        "",
        "Generated from the declarations in `napari_scigen.workflows.settings` (and",
        "`metrics.settings`, `core.masks`) by `options_markdown()`: the commands' flags and the",
        "docks' fields are built from the same declarations, so this page, the commands' help and the",
        "docks' tooltips say the same. The engines' own parameters are in",
        "[engines.md](engines.md).",
    ]
    for title, users, where, dock in WORKFLOW_SETTINGS:
        cls = _settings_class(where)
        labels = {spec.name: spec.label if spec.info.gui else "" for spec in fields_of(cls)}
        lines += ["", f"## {title}", "", f"`{cls.__name__}`: {users}.", ""]
        header = ["flag", *(["dock field"] if dock else []), "default", "allowed", "meaning"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in describe_params(cls):
            cells = [f"`{row['flag']}`" if row["flag"] else "(no flag)"]
            if dock:
                cells.append(labels[row["name"]] or "(no field)")
            cells += [row["default"], row["bounds"], row["help"].replace("|", "\\|")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
