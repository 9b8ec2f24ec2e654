"""Worker-thread step relay around diffusers calls: steps, results, cancel, early close."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from napari_scigen.core.progress import Cancelled, CancelToken  # noqa: E402
from napari_scigen.engines.sd.relay import StepCounter, relay_call  # noqa: E402


def test_relay_call_forwards_steps_and_result():
    def call(relay):
        for _ in range(3):
            relay.step()
        return "done"

    steps = relay_call(call, None)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert seen == [1, 1, 1] and result == "done"


def test_relay_call_cancel_while_handling_a_step_stops_at_the_next_step():
    token = CancelToken()
    reported = []

    def call(relay):
        for step in range(100):
            reported.append(step)
            relay.step_or_raise()
        return "never"

    steps = relay_call(call, token)
    assert next(steps) == 1  # the worker now waits until this event is handed on
    assert reported == [0]
    token.cancel()
    with pytest.raises(Cancelled):
        next(steps)
    assert reported == [0]


def test_relay_call_stops_worker_when_consumer_closes():
    stopped = []

    def call(relay):
        relay.step()
        stopped.append(relay.should_stop())
        return "ignored"

    steps = relay_call(call, None)
    next(steps)
    steps.close()  # releases and joins the worker, which sees the stop request
    assert stopped == [True]


def test_step_counter_reports_progress_over_several_calls():
    counter = StepCounter(4)

    def two_steps(relay):
        relay.step()
        relay.step()
        return "ok"

    events = []
    for _ in range(2):
        job = counter.relay(two_steps, None, "batch", 2)
        while True:
            try:
                events.append(next(job))
            except StopIteration as stop:
                assert stop.value == "ok"
                break
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [e.message for e in events[:2]] == ["batch: step 1/2", "batch: step 2/2"]
