"""A whole-volume start does not freeze the GUI importing its libraries (issue 21, finding 7).

Importing the cluster and OME-Zarr libraries took about 1.2 s of the click on the GUI
thread; a dock with a *Run on the whole volume* button now imports them on a background
thread when it is built, so the click only prepares the job.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from napari_scigen._qt import _batch
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget

#: Runs in a fresh interpreter: warm up, then do the click's GUI-side work (check the
#: cluster, plan, create the store) and list the slow libraries that work still imported.
_FRESH = textwrap.dedent(
    """
    import sys, tempfile, threading
    from pathlib import Path
    import numpy as np
    from napari_scigen._qt._batch import SLOW_IMPORTS, warm_up_whole_volume
    from napari_scigen.core.io import write_volume
    from napari_scigen.workflows.batch import (
        BatchRequest, ClusterOptions, check_cluster_available, plan_batch, prepare_store,
    )

    before = [name for name in SLOW_IMPORTS if name in sys.modules]
    thread = warm_up_whole_volume()
    assert thread is not threading.current_thread()
    thread.join(120)
    folder = Path(tempfile.mkdtemp())
    write_volume(folder / "v.tif", np.zeros((8, 16, 16), np.uint8))
    loaded = set(sys.modules)
    check_cluster_available(ClusterOptions(workers=1, dashboard=None))
    request = BatchRequest(
        "interpolate", "linear", str(folder / "v.tif"), str(folder / "o.ome.zarr"), factor=2
    )
    prepare_store(plan_batch(request))
    slow = sorted(
        name for name in set(sys.modules) - loaded
        if name.split(".")[0] in ("distributed", "zarr", "ome_zarr")
    )
    print("before", before)
    print("after-click", slow)
    """
)


def test_the_whole_volume_click_imports_no_slow_library_after_the_warm_up():
    done = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["before"] == "[]"  # the libraries were not loaded before the warm-up
    assert lines["after-click"] == "[]"  # ... and the click imported none of them


def test_docks_with_a_whole_volume_button_start_the_warm_up(make_napari_viewer, monkeypatch):
    started: list[str] = []
    monkeypatch.setattr(_batch, "warm_up_whole_volume", lambda: started.append("warm"))
    viewer = make_napari_viewer()
    InterpolateWidget(viewer)
    InpaintWidget(viewer)
    assert started == ["warm", "warm"]
