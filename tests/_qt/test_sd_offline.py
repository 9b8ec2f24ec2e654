"""Stable Diffusion engines without weights fail at once when the hub cannot be reached
(issue 21, finding 10): no tens of seconds of hub retries, the download command in a status
line the user can select and copy."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from napari_scigen.core.models import ModelNotAvailableError
from napari_scigen.engines.sd import hub


@pytest.fixture
def hanging_hub(monkeypatch, tmp_path):
    """A hub that accepts connections and never answers; downloads allowed, cache empty."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # held open, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    yield
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


def test_a_hub_that_never_answers_fails_in_seconds_with_the_download_command(hanging_hub):
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as raised:
        hub.locate_model(
            "someone/sd-model",
            what="Stable Diffusion",
            index_file="model_index.json",
            local_files_only=False,
        )
    assert time.monotonic() - started < hub.HUB_PROBE_TIMEOUT_S + 2.0
    assert "hf download someone/sd-model" in str(raised.value)
    assert "did not answer" in str(raised.value)


def test_a_hub_that_answers_is_used_for_downloads(monkeypatch, tmp_path):
    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
        source = hub.locate_model(
            "someone/sd-model",
            what="Stable Diffusion",
            index_file="model_index.json",
            local_files_only=False,
        )
    finally:
        server.shutdown()
    assert not source.offline and not source.cached and source.location == "someone/sd-model"


def test_the_edit_dock_without_weights_says_how_to_download_at_once_in_copyable_text(
    rock_viewer, qtbot, hanging_hub
):
    pytest.importorskip("torch")
    from qtpy.QtCore import Qt

    from napari_scigen._qt._edit_widget import EditWidget

    viewer, _ = rock_viewer
    widget = EditWidget(viewer)
    widget.image_picker.value = "rock"
    widget.methods.method = "instructpix2pix"
    prompts = [name for name, box in widget.methods.form.widgets.items() if "prompt" in name]
    widget.methods.form.set_values({prompts[0]: "larger pores"})
    widget.slices.value = "2"
    started = time.monotonic()
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    elapsed = time.monotonic() - started
    assert job.outcome == "error"
    assert "hf download" in widget.status.text()
    assert elapsed < 15.0  # the hub client's retries took 24-65 s (torch import included)
    flags = widget.status.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
