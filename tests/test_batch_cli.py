"""``napari-scigen batch``: a local run end to end, resume, cluster flags and the SLURM script."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")

from napari_scigen import api  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402


def test_batch_command_runs_resumes_and_summarises(tmp_path, capsys):
    volume = make_rock_volume(shape=(12, 64, 64), seed=2).volume
    source = write_volume(tmp_path / "rock.tif", volume, voxel_size=(2.0, 1.0, 1.0))
    out = tmp_path / "rock.flow.ome.zarr"
    argv = [
        "batch", "interpolate", "flow", str(source), "-o", str(out),
        "--missing", "2-4,8", "--flow-num-iter", "5", "--chunk-slices", "3",
        "--workers", "1", "--dashboard", "off",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "local cluster: 1 worker x" in captured.err and "no dashboard" in captured.err
    assert "chunks done" in captured.err and "complete; 4 chunk(s) computed" in captured.out
    assert "[4/4]" in captured.err and ", ETA " in captured.err  # the bar, with an ETA
    reference = api.interpolate(volume, missing=[2, 3, 4, 8], method="flow", flow_num_iter=5)
    result = read_volume(out)
    np.testing.assert_array_equal(result.data, reference.data)
    assert result.provenance["params"]["flow_num_iter"] == 5
    assert main(argv) == 0  # the same job again: nothing left to compute
    captured = capsys.readouterr()
    assert "resuming: 4 of 4 chunks already done" in captured.err
    assert "0 chunk(s) computed, 4 already done" in captured.out
    assert main([*argv[:-2], "--flow-num-iter", "6"]) == 2
    assert "other settings (params)" in capsys.readouterr().err


def test_cluster_flags_are_checked_before_any_work(tmp_path, capsys):
    source = write_volume(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8))
    base = ["batch", "interpolate", "linear", str(source), "-o", str(tmp_path / "o.ome.zarr")]
    assert main([*base, "--factor", "2", "--gpus", "1", "--cluster", "slurm"]) == 2
    assert "choose one of --gpus N and --cluster slurm" in capsys.readouterr().err
    assert main([*base, "--factor", "2", "--cluster", "slurm"]) == 2
    assert "--slurm-account is needed with --cluster slurm" in capsys.readouterr().err
    assert not (tmp_path / "o.ome.zarr").exists()


def test_slurm_profile_becomes_the_job_script(tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    source = write_volume(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8))
    argv = [
        "batch", "interpolate", "linear", str(source), "-o", str(tmp_path / "o.ome.zarr"),
        "--factor", "2", "--cluster", "slurm", "--slurm-account", "m1234",
        "--slurm-qos", "debug", "--slurm-gpus-per-node", "4", "--slurm-walltime", "00:30:00",
        "--slurm-cores", "64", "--slurm-prologue", "module load python", "--print-job-script",
    ]  # fmt: skip
    assert main(argv) == 0
    script = capsys.readouterr().out
    for line in (
        "#SBATCH -A m1234",
        "#SBATCH --qos=debug",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH -t 00:30:00",
        "#SBATCH --cpus-per-task=64",
        "module load python",
        "export OMP_NUM_THREADS=16",
        "--nthreads 1",
        "--nworkers 4",
    ):
        assert line in script


def test_the_summary_names_the_uncertainty_image_a_job_wrote(tmp_path, capsys, monkeypatch):
    # a learned job writes it (workflows._batch_worker); the job is replaced by one that
    # writes it at once, as training one would take longer than this test may
    from napari_scigen.core.io import write_zarr
    from napari_scigen.workflows import batch
    from napari_scigen.workflows._batch_worker import uncertainty_store

    def written(job, **_):
        write_zarr(uncertainty_store(job.store), np.zeros((7, 8, 8), np.float32), levels=1)
        return batch.BatchSummary(str(job.store), n_chunks=1, computed=1)
        yield  # a generator, like batch_job

    monkeypatch.setattr(batch, "batch_job", written)
    source = write_volume(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8))
    out = tmp_path / "o.ome.zarr"
    argv = ["batch", "interpolate", "linear", str(source), "-o", str(out), "--factor", "2", "-q"]
    assert main(argv) == 0
    assert f"uncertainty image: {out / 'uncertainty.ome.zarr'}" in capsys.readouterr().out


def test_the_free_disk_check_counts_the_uncertainty_image_a_learned_job_writes(
    tmp_path, capsys, monkeypatch
):
    import shutil

    volume = (np.arange(6 * 32 * 32) % 200).reshape(6, 32, 32).astype(np.uint8)
    write_volume(tmp_path / "v.tif", volume)
    output_bytes = (5 * 4 + 1) * 32 * 32  # factor 4: 21 uint8 slices
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=2 * output_bytes))
    command = ["batch", "interpolate", "METHOD", str(tmp_path / "v.tif"), "--factor", "4", "-q"]

    def run(method, *extra):
        argv = [method if part == "METHOD" else part for part in command]
        return main([*argv, "-o", str(tmp_path / f"{method}.ome.zarr"), *extra])

    # the uint8 output alone fits; with its float32 uncertainty image (4x) it does not
    assert run("learned", "--train-steps", "1") == 2
    err = capsys.readouterr().err
    assert "with its float32 uncertainty image" in err and "--factor" in err, err
    assert not (tmp_path / "learned.ome.zarr").exists()
    assert run("linear") == 0  # no uncertainty image: the same output fits
