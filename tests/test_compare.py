"""``compare``: engines that run offline (classical, learned when registered, StyleGAN, DCGAN,
tiny SD engines) on the sample rock write the paper's table and figure; missing weights
are skipped with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import write_volume  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.core.progress import drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.registry import engine_names  # noqa: E402
from napari_scigen.workflows.compare import (  # noqa: E402
    COMPARE_METRICS,
    choose_slices,
    compare_engines,
    resolve_engines,
    run_compare,
)
from napari_scigen.workflows.compare_report import write_compare_report  # noqa: E402
from tiny_sd import tiny_models  # noqa: E402
from tiny_sd_more import TINY_RESOLUTION, more_tiny_models  # noqa: E402

SD = {"resolution": TINY_RESOLUTION, "context": 8, "steps": 2}


@pytest.fixture(scope="module")
def rock():
    return make_rock_volume(shape=(10, 64, 64), seed=0).volume


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, rock):
    torch.set_num_threads(1)
    more = more_tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_more"))
    controlnet = tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd")).controlnet
    engines = [
        "inpaint/biharmonic",
        "interpolate/linear",
        "sample/stylegan",
        "sample/dcgan",
        "edit/diffedit",
        "edit/instructpix2pix",
        "edit/ledits",
        "inpaint/unclip",
        "generate/unclip",
        "generate/controlnet",
        "inpaint/controlnet",  # its default models are not on this machine: skipped
    ]
    engines += [
        f"{task}/learned" for task in ("interpolate", "inpaint") if "learned" in engine_names(task)
    ]
    params = {
        "edit/diffedit": {"model": str(more.sd), **SD},
        "edit/instructpix2pix": {"model": str(more.instructpix2pix), **SD},
        "edit/ledits": {"model": str(more.ledits), "edit_threshold": 0.5, **SD},
        "inpaint/unclip": {"model": str(more.unclip), **SD},
        "generate/unclip": {"model": str(more.unclip), **SD},
        "generate/controlnet": {"model": str(more.sd), "controlnet_model": str(controlnet), **SD},
        "inpaint/controlnet": SD,
        # the learned engines train on the volume first: a few tiny steps are enough here
        "interpolate/learned": {"train_steps": 2, "batch_size": 2, "crop_size": 32},
        "inpaint/learned": {"train_steps": 2, "batch_size": 2, "crop_size": 32},
    }
    train = {"dcgan": {"resolution": 32, "batch_size": 4, "channels": 8, "z_dim": 16}}
    job = run_compare(
        rock,
        engines=engines,
        n_slices=3,
        engine_params=params,
        train_params=train,
        train_steps=3,
        device="cpu",
    )
    return drain(job)


def test_every_engine_that_runs_offline_gets_a_row_per_score(comparison):
    extra = comparison.provenance["extra"]
    ran = [
        e for e in comparison.provenance["params"]["engines"] if e not in extra["skipped_engines"]
    ]
    assert "inpaint/controlnet" in extra["skipped_engines"]
    assert "not available offline" in extra["skipped_engines"]["inpaint/controlnet"]
    learned = {f"{t}/learned" for t in ("interpolate", "inpaint") if "learned" in engine_names(t)}
    offline = {"inpaint/biharmonic", "sample/dcgan", "edit/ledits", "generate/unclip"}
    assert set(ran) >= offline | learned, extra["skipped_engines"]
    assert set(comparison.images) == set(ran)
    scored = [m for m in COMPARE_METRICS if m not in extra["skipped_metrics"]]
    assert {"ssim", "gmsd", "porosity", "s2", "surface"} <= set(scored)
    rows = {(r["engine"], r["metric"]): r for r in comparison.provenance["table"]}
    for engine in ran:
        for metric in scored:
            assert (engine, metric) in rows, (engine, metric)
    ssim = rows[("inpaint/biharmonic", "ssim")]
    assert ssim["n"] == 3 and len(ssim["per_slice"]) == 3 and 0 < ssim["mean"] <= 1
    assert ssim["std"] == pytest.approx(np.std(ssim["per_slice"], ddof=1))
    # the masked engines change only the mask: biharmonic keeps most of each slice
    assert ssim["mean"] > rows[("sample/stylegan", "ssim")]["mean"]
    assert extra["slices"] == [1, 4, 8] and 0 < extra["mask_fraction"] < 0.2


def test_outputs_keep_the_volume_dtype_and_masked_engines_touch_only_the_mask(comparison, rock):
    mask = comparison.labels["mask"].astype(bool)
    real = comparison.data
    for engine in ("inpaint/biharmonic", "edit/instructpix2pix", "inpaint/unclip"):
        output = comparison.images[engine]
        assert output.dtype == rock.dtype and output.shape == real.shape
        np.testing.assert_array_equal(output[~mask], real[~mask])
    assert comparison.images["sample/dcgan"].shape == (3, 32, 32)


def test_the_report_has_the_table_the_figure_and_provenance(comparison, tmp_path):
    paths = write_compare_report(comparison, tmp_path)
    text = paths["markdown"].read_text()
    assert "| engine | SSIM ↑ |" in text and "`edit/ledits`" in text and " ± " in text
    assert "## Skipped engines" in text and "inpaint/controlnet" in text
    record = json.loads(paths["json"].read_text())
    assert record["engine"] == "compare" and record["table"] and "software" in record
    assert paths["figure"].stat().st_size > 10_000
    assert "inpaint/controlnet" in paths["csv"].read_text()


def test_engine_names_resolve_and_ambiguity_is_refused():
    assert "sample/stylegan-walk" not in compare_engines()  # a walk is not a set of samples
    assert resolve_engines("biharmonic, linear") == ("inpaint/biharmonic", "interpolate/linear")
    with pytest.raises(InvalidInputError, match="ambiguous"):
        resolve_engines("stylegan")
    with pytest.raises(InvalidInputError, match="unknown engines"):
        resolve_engines("inpaint/nothing")
    assert choose_slices(20, 4) == [1, 7, 12, 18]


def test_compare_command_writes_the_report_and_refuses_to_overwrite(rock, tmp_path, capsys):
    write_volume(tmp_path / "rock.tif", rock)
    out = tmp_path / "report"
    argv = [
        "compare",
        str(tmp_path / "rock.tif"),
        "-o",
        str(out),
        "--engines",
        "biharmonic,nearest",
    ]
    argv += ["-n", "2", "--device", "cpu", "-q", "--params", '{"nearest": {}}']
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "`interpolate/nearest`" in printed.out and (out / "compare.png").is_file()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--params", "[1]"]) == 2


def test_samples_morphology_is_compared_as_a_set_and_pore_sizes_for_every_engine(comparison):
    rows = {(r["engine"], r["metric"]): r for r in comparison.provenance["table"]}
    for metric in ("porosity", "surface", "s2", "psd"):
        row = rows[("sample/dcgan", metric)]
        assert row["per_slice"] == [] and "3 real vs 3 generated slices" in row["note"]
    paired = rows[("inpaint/biharmonic", "porosity")]
    assert len(paired["per_slice"]) == 3  # rebuilt slices: still slice by slice
    assert rows[("inpaint/biharmonic", "psd")]["mean"] >= 0
