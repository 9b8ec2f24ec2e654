"""A result is labelled as what actually filled it (issue 21, finding 2): when ``learned``
falls back, or ``auto`` picks a method, the layer name, a notification that stays (not a
progress line replaced by "Done.") and the provenance agree, in words for a scientist (no
CLI flags, no repository paths)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_scigen import api
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._outcome import plain_message
from napari_scigen.core.progress import Progress
from napari_scigen.core.provenance import make_provenance
from napari_scigen.core.result import EngineResult

#: What the learned engine says while it falls back on an unverifiable gap (its own words).
ENGINE_MESSAGE = (
    "learned: NOT VERIFIABLE: no kept slice can be rebuilt at gap 4 (only at the harder proxy "
    "gap 5), and on real scans the proxy did not predict the network's error at the job's gap "
    "(docs/validation.md); filling with linear instead; force_learned=True (--force-learned) "
    "uses the network anyway"
)


def _scores(**psnr) -> dict:
    return {
        "what": "kept slices",
        "count": 3,
        "scores": {m: {"psnr": v, "ssim": 0.9} for m, v in psnr.items()},
    }


def _engine(method: str, extra: dict, images: dict | None = None):
    """A stand-in for the engine's job: its progress message and a result whose provenance
    has the keys the learned engines record (``filled_with``, ``choice_reason``, ...)."""

    def job(data, *args, **kwargs):
        yield Progress(0, 2, ENGINE_MESSAGE)
        yield Progress(2, 2, "done")
        provenance = make_provenance(f"interpolate-{method}", {"method": method}, extra=extra)
        return EngineResult(
            data=np.array(data, copy=True), provenance=provenance, images=images or {}
        )

    return job


@pytest.fixture
def notes():
    received = []

    def take(event):
        received.append(str(event.message))

    notification_manager.notification_ready.connect(take)
    yield received
    notification_manager.notification_ready.disconnect(take)


def _interpolate(viewer, method):
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = method
    widget.missing.value = "4-6"
    statuses = []
    original = widget.set_status
    widget.set_status = lambda text: (statuses.append(text), original(text))
    widget.run()
    return widget, statuses


def test_a_learned_fallback_is_named_notified_and_recorded_as_linear(
    rock_viewer, nothreads, monkeypatch, notes
):
    viewer, _ = rock_viewer
    extra = {
        "filled_with": "linear",
        "choice_reason": ENGINE_MESSAGE,
        "learned_lost_self_validation": False,
        "learned_not_verifiable": True,
        "self_validation": None,
    }
    monkeypatch.setattr(api, "interpolate_job", _engine("learned", extra))
    widget, statuses = _interpolate(viewer, "learned")
    (layer,) = widget.new_layers
    assert layer.name == "rock linear (learned fallback) 1"
    assert layer.metadata["provenance"]["extra"]["filled_with"] == "linear"
    told = [n for n in notes if "Slice interpolation" in n and "linear" in n]
    assert (
        told
        and "learned was not used: the result is linear" in told[0]
        and "force learned" in told[0]
    )
    assert "learned was not used" in widget.status.text()  # stays, not replaced by "Done."
    for text in [*statuses, *told]:
        assert "--" not in text and ".md" not in text and "force_learned" not in text, text


def test_a_learned_win_and_an_auto_pick_are_said_with_their_scores(
    rock_viewer, nothreads, monkeypatch, notes
):
    viewer, _ = rock_viewer
    won = {
        "filled_with": "learned",
        "choice_reason": "learned beat linear on self-validation",
        "learned_lost_self_validation": False,
        "self_validation": _scores(learned=29.41, linear=27.79),
    }
    spread = np.zeros(viewer.layers["rock"].data.shape, np.float32)
    monkeypatch.setattr(api, "interpolate_job", _engine("learned", won, {"uncertainty": spread}))
    widget, _ = _interpolate(viewer, "learned")
    assert [layer.name for layer in widget.new_layers] == [
        "rock learned 1",
        "rock learned uncertainty",
    ]
    assert any("learned 29.41 dB, linear 27.79 dB" in n for n in notes)

    picked = {
        **won,
        "filled_with": "flow",
        "self_validation": _scores(flow=30.0, learned=29.0, linear=28.0),
    }
    monkeypatch.setattr(api, "interpolate_job", _engine("auto", picked))
    widget, _ = _interpolate(viewer, "auto")
    assert [layer.name for layer in widget.new_layers] == ["rock flow (auto) 1"]
    assert "auto filled with flow" in widget.status.text()
    assert any("flow 30.00 dB, learned 29.00 dB" in n for n in notes)


def test_a_learned_inpainting_that_lost_is_named_after_biharmonic(
    rock_viewer, nothreads, monkeypatch, notes
):
    viewer, image = rock_viewer
    mask = np.zeros(image.data.shape, np.uint8)
    mask[4, 30:40, 30:40] = 1
    viewer.add_labels(mask, name="rock mask", scale=image.scale)
    lost = {
        "filled_with": "biharmonic",
        "choice_reason": "LEARNED LOST SELF-VALIDATION: ...",
        "learned_lost_self_validation": True,
        "self_validation": _scores(learned=20.5, biharmonic=24.25),
    }
    monkeypatch.setattr(api, "inpaint_job", _engine("learned", lost))
    widget = InpaintWidget(viewer)
    widget.method.value = "learned"
    widget.run()
    (layer,) = widget.new_layers
    assert layer.name == "rock biharmonic (learned fallback) 1"
    assert any("did worse than biharmonic" in n and "biharmonic 24.25 dB" in n for n in notes)


def test_engine_messages_lose_cli_flags_and_repository_paths():
    assert plain_message(ENGINE_MESSAGE).endswith(
        "filling with linear instead; 'force learned' uses the network anyway"
    )
    assert "(docs/" not in plain_message(ENGINE_MESSAGE)
    assert plain_message("slice 3/10 (2 of 5)") == "slice 3/10 (2 of 5)"


def test_a_keep_every_fallback_quotes_the_in_plane_exact_gap_scores():
    from napari_scigen._qt._outcome import fill_outcome

    extra = {
        "filled_with": "linear",
        "learned_lost_self_validation": True,
        "z_check_exact": False,
        "self_validation": _scores(learned=19.0, linear=20.5, flow=20.0),  # the gap-2G proxy
        "in_plane_check": _scores(learned=25.0, linear=25.2),  # the job's own gap
    }
    outcome = fill_outcome("learned", {"extra": extra}, "interpolate")
    assert outcome is not None and outcome.filled == "linear" and outcome.warning
    assert "linear 25.20 dB" in outcome.message and "learned 25.00 dB" in outcome.message


def test_stylegan_outcomes_name_its_own_force_field_and_the_texture_criterion():
    from napari_scigen._qt._outcome import fill_outcome

    scores = {"stylegan": {"psnr": 27.5, "gmsd": 0.081}, "linear": {"psnr": 28.1, "gmsd": 0.102}}
    extra = {"filled_with": "stylegan", "self_validation": {"scores": scores, "count": 4}}
    won = fill_outcome("stylegan", {"extra": extra}, "interpolate")
    assert won.label == "stylegan" and not won.warning
    assert "kept the texture better than linear" in won.message
    assert "stylegan 0.081, linear 0.102" in won.message and "within 1 dB" in won.message
    assert "did better" not in won.message  # its PSNR is lower: no such claim
    lost = {**extra, "filled_with": "linear", "learned_lost_self_validation": True}
    fallback = fill_outcome("stylegan", {"extra": lost}, "interpolate")
    assert "'force stylegan' (under Advanced)" in fallback.message
    assert "force learned" not in fallback.message
    assert "did not keep the texture (GMSD) better than linear" in fallback.message
