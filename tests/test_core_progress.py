import pytest

from napari_scigen.core.progress import Cancelled, CancelToken, Progress, check_cancelled, drain


def _counting_engine(n, cancel=None):
    for i in range(n):
        check_cancelled(cancel)
        yield Progress(i + 1, n, f"step {i + 1}/{n}")
    return {"done": n}


def test_drain_returns_generator_value_and_reports_every_event():
    events = []
    result = drain(_counting_engine(3), on_progress=events.append)
    assert result == {"done": 3}
    assert [e.step for e in events] == [1, 2, 3]
    assert events[-1].fraction == 1.0


def test_cancel_token_stops_engine_at_next_check():
    token = CancelToken()
    generator = _counting_engine(5, token)
    assert next(generator).step == 1
    token.cancel()
    with pytest.raises(Cancelled):
        next(generator)


def test_progress_fraction_is_zero_when_total_unknown():
    assert Progress(3, 0).fraction == 0.0


def test_relay_progress_rescales_events_and_returns_the_nested_result():
    from napari_scigen.core.progress import relay_progress

    def inner():
        yield Progress(1, 2, "half")
        yield "not progress"
        yield Progress(2, 2, "all")
        return "result"

    def outer():
        value = yield from relay_progress(
            inner(), lambda e: Progress(10 + e.step, 20, f"stage: {e.message}")
        )
        return value

    events = []
    assert drain(outer(), on_progress=events.append) == "result"
    assert [(e.step, e.total, e.message) for e in events] == [
        (11, 20, "stage: half"),
        (12, 20, "stage: all"),
    ]
