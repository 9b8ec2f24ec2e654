"""``batch``: run a registered engine over the z-chunks of a volume on a Dask cluster.

``napari-scigen batch TASK METHOD INPUT -o OUT.ome.zarr`` with the engine's own flags
(the same as ``napari-scigen interpolate``/``inpaint``...). The job is resumable: rerun
the same command after an interruption and only the missing chunks are computed. See
docs/scaling.md for local, GPU and SLURM runs.
"""

from __future__ import annotations

import argparse
import sys

from .common import ProgressPrinter, add_engine_arguments, engine_params_from_args

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
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, help="output OME-Zarr store (.ome.zarr)")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="start over, replacing the output (default: resume a store of the same job)",
    )
    out.add_argument(
        "--chunk-slices", type=int, help="output slices per task (default: one stored chunk)"
    )
    out.add_argument("--levels", type=int, default=1, help="resolution levels of the output")
    out.add_argument("--retries", type=int, default=2, help="retries of a failing chunk")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    where = parser.add_argument_group("cluster")
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    where.add_argument(
        "--worker-threads",
        type=int,
        help="torch/OpenMP threads per worker (default: cores / workers)",
    )
    where.add_argument("--gpus", type=int, help="local GPUs, one worker each (needs dask-cuda)")
    where.add_argument(
        "--cluster", choices=("local", "slurm"), default="local", help="where workers run"
    )
    where.add_argument(  # not --scheduler: the Stable Diffusion engines' sampler flag
        "--scheduler-address",
        help="attach to a running Dask scheduler: tcp://host:8786 or its --scheduler-file JSON",
    )
    where.add_argument(
        "--dashboard", default=":8787", help="dashboard address (':0' any port, 'off' none)"
    )

    slurm = parser.add_argument_group("SLURM profile (--cluster slurm; see docs/scaling.md)")
    slurm.add_argument("--slurm-account", help="allocation to charge (#SBATCH -A)")
    slurm.add_argument("--slurm-qos", default="regular", help="quality of service")
    slurm.add_argument("--slurm-constraint", default="gpu", help="node type ('' for none)")
    slurm.add_argument("--slurm-partition", help="partition, where the centre uses them")
    slurm.add_argument(
        "--slurm-gpus-per-node", type=int, default=4, help="GPUs per node, one worker each"
    )
    slurm.add_argument(
        "--slurm-workers-per-node", type=int, default=1, help="workers per CPU-only node"
    )
    slurm.add_argument("--slurm-cores", type=int, default=64, help="cores per job")
    slurm.add_argument("--slurm-memory", default="200GB", help="memory per job")
    slurm.add_argument("--slurm-walltime", default="01:00:00", help="time limit, HH:MM:SS")
    slurm.add_argument("--slurm-jobs", type=int, default=1, help="jobs (nodes) to start")
    slurm.add_argument(
        "--slurm-prologue",
        action="append",
        default=[],
        help="shell line run before the workers start (repeatable), e.g. 'module load python'",
    )
    slurm.add_argument("--slurm-interface", help="network interface of the nodes, e.g. hsn0")
    slurm.add_argument("--slurm-local-directory", help="node-local scratch, e.g. $TMPDIR")
    slurm.add_argument(
        "--print-job-script", action="store_true", help="print the SLURM job script and exit"
    )


def slurm_profile_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows._batch_cluster.SlurmProfile` of the flags."""
    from ..cli import CliError
    from ..workflows._batch_cluster import SlurmProfile

    if not args.slurm_account:
        raise CliError("--cluster slurm needs --slurm-account (the allocation to charge)")
    return SlurmProfile(
        account=args.slurm_account,
        qos=args.slurm_qos,
        constraint=args.slurm_constraint or None,
        partition=args.slurm_partition,
        gpus_per_node=args.slurm_gpus_per_node,
        workers_per_node=args.slurm_workers_per_node,
        cores_per_node=args.slurm_cores,
        memory=args.slurm_memory,
        walltime=args.slurm_walltime,
        jobs=args.slurm_jobs,
        prologue=tuple(args.slurm_prologue),
        local_directory=args.slurm_local_directory,
        interface=args.slurm_interface,
    )


def cluster_options_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows._batch_cluster.ClusterOptions` of the flags."""
    from ..cli import CliError
    from ..workflows._batch_cluster import ClusterOptions

    chosen = [
        flag
        for flag, given in (
            ("--gpus", args.gpus is not None),
            ("--cluster slurm", args.cluster == "slurm"),
            ("--scheduler-address", bool(args.scheduler_address)),
        )
        if given
    ]
    if len(chosen) > 1:
        raise CliError(f"choose one of {' and '.join(chosen)}")
    dashboard = None if str(args.dashboard).lower() in ("off", "none", "") else args.dashboard
    common = {
        "threads": args.worker_threads,
        "dashboard": dashboard,
        "task_tracebacks": bool(getattr(args, "debug", False)),
    }
    if args.scheduler_address:
        return ClusterOptions("scheduler", scheduler=args.scheduler_address, **common)
    if args.cluster == "slurm":
        return ClusterOptions("slurm", slurm=slurm_profile_from_args(args), **common)
    if args.gpus is not None:
        return ClusterOptions("cuda", gpus=args.gpus, **common)
    return ClusterOptions("local", workers=args.workers, **common)


def _request_from_args(args: argparse.Namespace):
    from ..cli import CliError
    from ..core.indices import parse_indices, parse_slice_selection
    from ..core.io import read_volume
    from ..workflows.batch import BatchRequest

    task = args.batch_task
    params = engine_params_from_args(task, args)
    missing = slices = None
    needs_depth = getattr(args, "missing", None) or getattr(args, "slices", None)
    depth = read_volume(args.input, lazy=True).shape[0] if needs_depth else None
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
        chunk_slices=args.chunk_slices,
        levels=args.levels,
    )


#: Count flags and the least each accepts.
_COUNT_FLAGS = {
    "chunk_slices": 1,
    "retries": 0,
    "levels": 1,
    "workers": 1,
    "worker_threads": 1,
    "gpus": 1,
    "slurm_jobs": 1,
    "slurm_cores": 1,
    "slurm_gpus_per_node": 0,
    "slurm_workers_per_node": 1,
}


def _check_counts(args: argparse.Namespace) -> None:
    """Refuse counts below their minimum (``--chunk-slices 0``, ``--retries -1``) before any work."""
    from ..cli import CliError

    for name, least in _COUNT_FLAGS.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            flag = "--" + name.replace("_", "-")
            raise CliError(f"{flag} must be an integer >= {least}, got {value}")


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "#" * filled + "-" * (width - filled)


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen batch``."""
    from ..cli import CliError
    from ..core.progress import Progress, drain
    from ..workflows.batch import (
        BatchIncompleteError,
        batch_job,
        check_cluster_available,
        plan_batch,
        prepare_store,
    )

    _check_counts(args)
    options = cluster_options_from_args(args)
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
        job = prepare_store(plan_batch(_request_from_args(args)), overwrite=args.overwrite)
    except ImportError as error:
        raise CliError(str(error)) from None
    if job.note and not args.quiet:
        print(job.note if job.note.startswith("warning:") else f"note: {job.note}", file=sys.stderr)
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
        summary = drain(batch_job(job, options=options, retries=args.retries), on_progress=show)
    except BatchIncompleteError as error:
        printer.close()
        raise CliError(str(error)) from None
    printer.close()
    print(summary.describe())
    return 0
