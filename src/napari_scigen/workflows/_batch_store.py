"""The output store of a batch job: creating it, its done markers, resuming and finishing.

Inside the OME-Zarr store, ``.napari_scigen_batch/`` holds ``job.json`` (the job's
fingerprint and the measured value range), ``done/NNNNNN.json`` (one marker per
finished chunk, written after its region) and ``attempts/`` (one file per start of a
chunk), and ``complete.json`` once every chunk is done.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..core.provenance import make_provenance, to_jsonable
from ..core.validation import InvalidInputError
from ._batch_job import BatchJob, _chunks_of

#: Folder inside the output store that records the job and its finished chunks.
BATCH_FOLDER = ".napari_scigen_batch"


# --------------------------------------------------------------------------------------
# the output store and its markers
# --------------------------------------------------------------------------------------


def _batch_folder(store: Path) -> Path:
    return Path(store) / BATCH_FOLDER


def _write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` atomically (temporary file, then rename)."""
    from ..core.io.outputs import atomic_path

    with atomic_path(path) as temporary:  # a full disk leaves no .tmp file behind
        temporary.write_text(json.dumps(to_jsonable(record), indent=1, sort_keys=True))


def done_chunks(store: str | os.PathLike) -> set[int]:
    """Indices of the chunks of the store's job that have a done marker."""
    folder = _batch_folder(Path(store)) / "done"
    if not folder.is_dir():
        return set()
    return {int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()}


def chunk_attempts(store: str | os.PathLike) -> dict[int, int]:
    """How many times each chunk was started (more than once: retried or worker lost)."""
    folder = _batch_folder(Path(store)) / "attempts"
    counts: dict[int, int] = {}
    for path in folder.glob("*.json") if folder.is_dir() else ():
        index = int(path.name.split(".")[0])
        counts[index] = counts.get(index, 0) + 1
    return counts


def _read_job_record(store: Path) -> dict | None:
    path = _batch_folder(store) / "job.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise InvalidInputError(
            f"{path} is damaged; run again with overwrite=True to start over",
            options=["overwrite"],
        ) from None


def _initial_provenance(job: BatchJob) -> dict:
    request = job.request
    _, plan = _chunks_of(job.geometry())
    return make_provenance(
        f"batch-{request.task}-{request.method}",
        job.params,
        source={
            "file": str(request.input),
            "shape": job.input_shape,
            "dtype": job.input_dtype,
            "mask_file": request.mask,
            "control_file": request.control,
        },
        extra={
            "task": request.task,
            "method": request.method,
            "missing": request.missing,
            "factor": request.factor,
            "slices": request.slices,
            "chunk_slices": job.chunk_slices,
            "n_chunks": len(job.chunks),
            "halo": job.halo,
            "deterministic": job.deterministic,
            "value_range_carried": job.carry_range,
            "learns_from_input": job.learns_from_input,
            "chunking_note": job.note,
            "plan": plan,
            "complete": False,
        },
    )


def _refuse_changed_inputs(store: Path, stored: dict, job: BatchJob) -> None:
    """Refuse to resume when only the content of an input changed since the store began."""
    fingerprint = job.fingerprint()
    others = [k for k, v in fingerprint.items() if k != "inputs_content" and stored.get(k) != v]
    if others or "inputs_content" not in stored:
        return
    before = {path: identity for path, identity in stored.get("inputs_content") or []}
    changed = [path for path, identity in job.inputs_content if before.get(path) != identity]
    if changed:
        raise InvalidInputError(
            f"{store} was started from other content of {', '.join(changed)} (the files "
            "changed since: sizes or modification times differ), so resuming would mix old "
            "and new results; run again with overwrite=True to start over, or write to "
            "another store",
            options=["overwrite"],
        )


def prepare_store(job: BatchJob, *, overwrite: bool = False) -> BatchJob:
    """Create the output store, or check that an existing one holds this very job.

    Returns
    -------
    BatchJob
        The job, with the value range measured by an earlier run of it (if any).

    Raises
    ------
    InvalidInputError
        The store exists and holds another job, a job started from other input content
        (a changed input file or store) or is no batch output (unless ``overwrite``), or
        is not a zarr store at all.
    """
    from ..core.io.zarr_store import is_zarr_store

    store = job.store
    record = None
    if store.exists():
        is_store = is_zarr_store(store)
        record = _read_job_record(store) if is_store else None
        if overwrite and is_store:
            shutil.rmtree(store)
            record = None
        elif not is_store:
            raise InvalidInputError(
                f"{store} exists and is not a zarr store; remove it or choose another output"
            )
        elif record is None:
            raise InvalidInputError(
                f"{store} exists and is not a batch output; run again with overwrite=True to "
                "replace it",
                options=["overwrite"],
            )
        elif record.get("job") != job.fingerprint():
            _refuse_changed_inputs(store, record.get("job") or {}, job)
            changed = sorted(
                key
                for key, value in job.fingerprint().items()
                if (record.get("job") or {}).get(key) != value
            )
            raise InvalidInputError(
                f"{store} holds a batch job with other settings ({', '.join(changed)}); run "
                "again with overwrite=True to start over, or write to another store",
                options=["overwrite"],
            )
    if record is not None:
        stored_range = record.get("value_range")
        return replace(job, value_range=tuple(stored_range) if stored_range else None)
    try:
        _create_store(job)
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)  # a half-made store is no job to resume
        raise
    return replace(job, created=True)


def _create_store(job: BatchJob) -> None:
    from ..core.io.zarr_write import create_zarr

    store = job.store
    create_zarr(
        store,
        job.output_shape,
        job.output_dtype,
        voxel_size=job.voxel_size,
        unit=job.unit,
        provenance=_initial_provenance(job),
        kind=job.kind,
        chunk_slices=job.store_chunk_slices,
        levels=job.request.levels,
        ngff_version=job.request.ngff_version,
    )
    folder = _batch_folder(store)
    (folder / "done").mkdir(parents=True)
    (folder / "attempts").mkdir()
    _write_json(folder / "job.json", {"job": job.fingerprint(), "value_range": None})


def discard_store(job: BatchJob) -> None:
    """Remove the store this run created, finished chunks and all (none can be resumed)."""
    if job.created and job.store.is_dir():
        shutil.rmtree(job.store, ignore_errors=True)


def discard_if_empty(job: BatchJob) -> None:
    """Remove a store this run created when no chunk of it was finished (nothing to resume)."""
    if job.created and job.store.is_dir() and not done_chunks(job.store):
        shutil.rmtree(job.store, ignore_errors=True)


def finish_store(job: BatchJob, summary) -> None:
    """Record in the store's provenance that every chunk is done, and how the run went."""
    from ..core.io.read import read_volume
    from ..core.io.zarr_write import update_zarr_record

    provenance = read_volume(job.store, lazy=True).provenance or _initial_provenance(job)
    extra = dict(provenance.get("extra") or {})
    model = _batch_folder(job.store) / "model" / "learned.json"
    if model.is_file():  # a learned engine trained once: what it decided, on what
        fitted = json.loads(model.read_text())["fitted"]
        kept = ("filled_with", "choice_reason", "decided_by", "self_validation",
                "expected_error", "fit_sample", "network_window", "training",
                "fit_threads")  # fmt: skip
        extra["fitted"] = {k: fitted["extra"].get(k) for k in kept}
    extra.update(
        complete=True,
        value_range=job.value_range,
        last_run={
            "computed": summary.computed,
            "skipped": summary.skipped,
            "seconds": round(summary.seconds, 3),
            "cluster": summary.cluster,
            "workers": summary.workers,
        },
    )
    update_zarr_record(job.store, provenance={**provenance, "extra": extra})
    _write_json(_batch_folder(job.store) / "complete.json", {"summary": summary.describe()})
