"""Progress lines: counts, rate, time left, and the quiet switch."""

import io

import pytest

from keras_mmga.progress import Progress, _format_seconds, track


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr("keras_mmga.progress.time.monotonic", c)
    return c


def test_line_reports_count_rate_and_time_left(clock):
    out = io.StringIO()
    bar = Progress(100, "images", label="gallery features", stream=out, interval=0)
    clock.now += 10.0
    bar.update(25)  # 25 images in 10 s: 2.5/s, 75 left -> 30 s
    assert out.getvalue().splitlines()[-1] == (
        "gallery features: 25/100 images, 2.5 images/s, elapsed 00:10, left 00:30"
    )
    clock.now += 30.0
    bar.update(75)
    bar.close()
    assert out.getvalue().splitlines()[-1] == "gallery features: 100/100 images, 2.5 images/s, elapsed 00:40"


def test_log_stream_writes_at_most_every_interval(clock):
    out = io.StringIO()
    bar = Progress(None, "batches", stream=out, interval=5.0)
    for _ in range(10):  # 10 updates within 4.5 s: one line (the first)
        clock.now += 0.45
        bar.update()
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 5.0
    bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("11 batches")


def test_quiet_progress_counts_but_writes_nothing(clock):
    out = io.StringIO()
    items = list(track(range(4), unit="images", verbose=False, stream=out))
    assert items == [0, 1, 2, 3] and out.getvalue() == ""


def test_format_seconds_and_bad_total():
    assert _format_seconds(3725) == "1:02:05" and _format_seconds(59.6) == "01:00"
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress(-1)
