"""``batch``: run a registered engine over the z-chunks of a volume on a Dask cluster.

``napari-scigen batch TASK METHOD INPUT -o OUT.ome.zarr`` with the engine's own flags
(the same as ``napari-scigen interpolate``/``inpaint``...). The job is resumable: rerun
the same command after an interruption and only the missing chunks are computed. See
docs/scaling.md for local, GPU and SLURM runs.
"""

from __future__ import annotations

import argparse
import sys

from ..core.params import fields_of
from .common import (
    ProgressPrinter,
    add_engine_arguments,
    add_series_argument,
    engine_params_from_args,
    flag_spelling,
)

#: Per task: (description, its extra inputs).
_TASK_HELP = {
    "interpolate": "rebuild missing slices (--missing) or upsample z (--factor)",
    "inpaint": "fill the masked pixels of every slice (--mask)",
    "mask": "derive a mask slice by slice",
    "edit": "edit the masked region of every slice",
    "generate": "synthesize slices conditioned on the real ones",
}


def register(subparsers) -> None:
    """Add the ``batch`` subcommand with one sub-command per task."""
    from ..engines.registry import engine_names
    from ..workflows._batch_plan import BATCH_TASKS

    parser = subparsers.add_parser(
        "batch",
        help="run an engine over a whole volume on a Dask cluster (resumable, OME-Zarr out)",
        description="Run a registered engine over the z-chunks of a volume with "
        "dask.distributed: a local cluster sized to the machine (default), local GPUs "
        "(--gpus, dask-cuda), SLURM (--cluster slurm, dask-jobqueue) or a running scheduler "
        "(--scheduler-address). Each chunk writes its own region of the OME-Zarr output and a done "
        "marker; rerunning the same command resumes. Deterministic engines give the same "
        "output as one process, bit for bit.",
    )
    tasks = parser.add_subparsers(dest="batch_task", metavar="TASK", required=True)
    for task in BATCH_TASKS:
        names = engine_names(task)
        if not names:
            continue
        sub = tasks.add_parser(task, help=_TASK_HELP[task], description=_TASK_HELP[task])
        sub.add_argument("method", choices=names, help="the engine (napari-scigen engines)")
        sub.add_argument("input", help="3D TIFF stack, folder of TIFF slices or .zarr store")
        add_series_argument(sub)
        _add_task_inputs(sub, task)
        add_engine_arguments(sub, task, method_flag=False)
        _add_batch_arguments(sub)
        sub.set_defaults(func=run_batch_command)


def _add_task_inputs(parser, task: str) -> None:
    if task == "interpolate":
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--missing", help="slice indices to synthesize, e.g. 10,11,12 or 10-12")
        group.add_argument("--factor", type=int, help="z upsampling factor (>= 2)")
        return
    if task in ("inpaint", "edit"):
        parser.add_argument(
            "--mask",
            required=task == "inpaint",
            help="mask volume (non-zero = process), same shape as the input or one slice",
        )
    if task in ("inpaint", "generate"):
        parser.add_argument("--control", help="control volume, for engines that take one")
    parser.add_argument("--slices", help="slices to process: 'START:STOP' or '3, 5, 10-12'")


def _add_batch_arguments(parser) -> None:
    """The command's own flags (-o, -q, --print-job-script) and the batch workflow's
    options, one flag per :class:`~napari_scigen.workflows.settings.BatchParams` field."""
    from ..core.params import add_cli_arguments
    from ..workflows.settings import BATCH_GROUPS, BatchParams

    names = [spec.name for spec in fields_of(BatchParams)]
    for title, shown in BATCH_GROUPS.items():
        group = parser.add_argument_group(title)
        if title == "output":
            group.add_argument(
                "-o", "--output", required=True, help="output OME-Zarr store (.ome.zarr)"
            )
        exclude = [name for name in names if name not in shown]
        add_cli_arguments(group, BatchParams, exclude=exclude)
        if title == "output":
            group.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    group.add_argument(
        "--print-job-script", action="store_true", help="print the SLURM job script and exit"
    )


def batch_settings_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows.settings.BatchParams` the typed flags give.

    Raises
    ------
    InvalidInputError
        A bad value (``--chunk-slices must be >= 1, got 0``), or options that contradict
        each other (``--gpus`` with ``--cluster slurm``); the command prints the options
        it names as its flags (``_cli.common.cli_message``).
    """
    from ..core.params import params_from_cli
    from ..workflows.settings import BatchParams

    return params_from_cli(BatchParams, args, ignore_foreign=True)


def cluster_options_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows._batch_cluster.ClusterOptions` of the flags."""
    return batch_settings_from_args(args).cluster_options(
        task_tracebacks=bool(getattr(args, "debug", False))
    )


def _request_from_args(args: argparse.Namespace, settings):
    from ..cli import CliError
    from ..core.indices import parse_indices, parse_slice_selection
    from ..core.io import read_volume
    from ..core.params import without_params
    from ..workflows.batch import BatchRequest
    from ..workflows.settings import BatchParams

    task = args.batch_task
    params = engine_params_from_args(task, without_params(args, BatchParams))
    missing = slices = None
    needs_depth = getattr(args, "missing", None) or getattr(args, "slices", None)
    series = getattr(args, "series", None)
    depth = read_volume(args.input, lazy=True, series=series).shape[0] if needs_depth else None
    if getattr(args, "missing", None):
        missing = parse_indices(args.missing, depth)
        if not missing:
            raise CliError(f"--missing {args.missing!r} names no slice; give e.g. 10,11,12")
    if getattr(args, "slices", None):
        chosen = parse_slice_selection(args.slices, depth)
        slices = None if chosen is None else tuple(chosen)
    return BatchRequest(
        task,
        args.method,
        args.input,
        args.output,
        params=params,
        missing=missing,
        factor=getattr(args, "factor", None),
        mask=getattr(args, "mask", None),
        control=getattr(args, "control", None),
        slices=slices,
        chunk_slices=settings.chunk_slices,
        levels=settings.levels,
        series=series,
    )


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "#" * filled + "-" * (width - filled)


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen batch``."""
    from ..cli import CliError
    from ..core.progress import Progress, drain
    from ..core.validation import spell_options
    from ..workflows._batch_worker import uncertainty_store
    from ..workflows.batch import (
        BatchIncompleteError,
        batch_job,
        check_cluster_available,
        plan_batch,
        prepare_store,
    )

    settings = batch_settings_from_args(args)
    options = settings.cluster_options(task_tracebacks=bool(getattr(args, "debug", False)))
    check_cluster_available(options)  # a missing dask-cuda/dask-jobqueue: before any work
    if args.print_job_script:
        if options.kind != "slurm":
            raise CliError("--print-job-script needs --cluster slurm")
        from ..workflows._batch_cluster import slurm_cluster

        cluster = slurm_cluster(options.slurm, dashboard=None)
        try:
            print(cluster.job_script())
        finally:
            cluster.close()
        return 0
    try:
        request = _request_from_args(args, settings)
        job = prepare_store(plan_batch(request), overwrite=settings.overwrite)
    except ImportError as error:
        raise CliError(str(error)) from None
    if job.note and not args.quiet:
        note = spell_options(  # chunk_slices=N -> --chunk-slices N
            job.note, ["chunk_slices"], lambda name, value: flag_spelling(name, value)
        )
        print(note if note.startswith("warning:") else f"note: {note}", file=sys.stderr)
    printer = ProgressPrinter(quiet=args.quiet)
    first = [True]

    def show(event: Progress) -> None:
        if first[0]:  # the cluster, its dashboard, and what a resumed job had done
            first[0] = False
            if args.quiet:
                return
            resumed = f"; resuming: {event.step} of {event.total} chunks already done"
            print(event.message + (resumed if event.step else ""), file=sys.stderr)
            return
        printer(Progress(event.step, event.total, f"[{_bar(event.fraction)}] {event.message}"))

    try:
        job_run = batch_job(job, options=options, retries=settings.retries)
        summary = drain(job_run, on_progress=show)
    except BatchIncompleteError as error:
        printer.close()
        raise CliError(str(error)) from None
    printer.close()
    print(summary.describe())
    spread = uncertainty_store(job.store)
    if spread.exists():  # a learned engine's per-voxel spread, inside the output store
        print(f"uncertainty image: {spread}")
    return 0
