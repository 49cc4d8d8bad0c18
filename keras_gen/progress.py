"""Progress on stderr for long work: off unless the caller turns it on.

The library stays quiet: everything here is a no-op until `enable()`. The
`keras-gen` command turns it on when stderr is a terminal and --quiet is absent;
a user may call `progress.enable()` too. Long loops show a bar:

    from keras_gen import progress

    with progress.bar("denoising", total=num_steps, unit="steps") as advance:
        for step in range(num_steps):
            images = denoise(images, step)
            advance()

An opaque call (a conversion, a file write) shows its elapsed time instead:

    with progress.stage("converting to TFLite"):
        flatbuffer = converter.convert()

Inside a `tf.function` traced for this purpose only (never an exported signature:
the op calls back into Python), `progress.advance_in_graph()` advances the
innermost bar each time it runs. One bar is drawn at a time; a bar opened inside
another ends the outer one's line, and the outer one is redrawn when it closes.
"""

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

REDRAW_SECONDS = 0.1  # at most ten redraws a second: a bar must not slow the loop
TICK_SECONDS = 0.5  # how often a stage's clock moves

_enabled = False
_lock = threading.RLock()
_bars: list["_Bar"] = []  # open bars, innermost last


def enable(on: bool = True) -> None:
    """Show progress from now on (or stop showing it, `on=False`)."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    """Whether progress is shown: lets a caller skip work only a bar needs."""
    return _enabled


@contextlib.contextmanager
def showing(on: bool) -> Iterator[None]:
    """`enable(on)` for the block only; the CLI's way, so in-process calls leave no trace."""
    previous = _enabled
    enable(on)
    try:
        yield
    finally:
        enable(previous)


@contextlib.contextmanager
def bar(
    label: str, total: int | None = None, unit: str = "steps"
) -> Iterator[Callable[..., None]]:
    """A bar for the block; yields `advance(steps=1)`. Without `total`, a counter."""
    if not _enabled:
        yield _ignore
        return
    shown = _Bar(label, total, unit)
    with _lock:
        if _bars:
            _bars[-1].end_line()
        _bars.append(shown)
        shown.draw(force=True)
    try:
        yield shown.advance
    finally:
        with _lock:
            shown.draw(force=True)
            shown.end_line()
            _bars.remove(shown)
            if _bars:
                _bars[-1].draw(force=True)


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """One opaque step: its label and a clock that moves while the block runs."""
    with bar(label, unit="") as step:
        if step is _ignore:
            yield
            return
        done = threading.Event()
        clock = threading.Thread(target=_tick, args=(done,), daemon=True)
        clock.start()
        try:
            yield
        finally:
            done.set()
            clock.join()


def advance(steps: int = 1) -> None:
    """Advance the innermost bar: for code that does not hold it (graph callbacks)."""
    with _lock:
        if _bars:
            _bars[-1].advance(steps)


def advance_in_graph() -> None:
    """In a `tf.function`: an op that calls `advance()` every time it runs.

    Never use it in a function that is exported: the op is Python (`tf.py_function`).
    """
    import tensorflow as tf

    tf.py_function(advance, [], [])


def on_batches(step: Callable[..., None]) -> list:
    """Keras callbacks that call `step()` after each batch of evaluate or predict;
    none while progress is off, so Keras keeps its batches unsynchronised."""
    if not _enabled:
        return []
    import keras

    def after_batch(batch, logs=None):
        step()

    return [
        keras.callbacks.LambdaCallback(
            on_test_batch_end=after_batch, on_predict_batch_end=after_batch
        )
    ]


def _ignore(steps: int = 1) -> None:
    """The `advance` of a bar that is not shown."""


def _tick(done: threading.Event) -> None:
    while not done.wait(TICK_SECONDS):
        with _lock:
            if _bars:
                _bars[-1].draw(force=True)


class _Bar:
    """One line on stderr, redrawn in place: label, bar, count, elapsed and ETA."""

    def __init__(self, label: str, total: int | None, unit: str):
        self.label, self.total, self.unit = label, total, unit
        self.count = 0
        self.start = time.monotonic()
        # The rate is measured from the first step on, so that the time before it
        # (tracing, loading) does not inflate the estimate of the time left.
        self.first_step: tuple[float, int] | None = None
        self.drawn_at = 0.0
        self.on_line = False  # whether the cursor is on this bar's line

    def advance(self, steps: int = 1) -> None:
        with _lock:
            if self.first_step is None:
                self.first_step = (time.monotonic(), self.count + int(steps))
            self.count += int(steps)
            self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < REDRAW_SECONDS:
            return
        if _bars and _bars[-1] is not self:
            return  # an inner bar owns the line
        self.drawn_at = now
        text = self.text(now - self.start)[: _columns() - 1]
        _write(f"\r{text}\x1b[K")
        self.on_line = True

    def text(self, elapsed: float) -> str:
        count = f"{self.count}/{self.total}" if self.total else f"{self.count or ''}"
        words = [self.label]
        if self.total:
            filled = int(20 * min(self.count / self.total, 1.0))
            words.append(f"[{'=' * filled}{'.' * (20 - filled)}]")
        if count:
            words.append(f"{count} {self.unit}".rstrip())
        words.append(_clock(elapsed))
        left = self.seconds_left()
        if left is not None:
            words.append(f"({_clock(left)} left)")
        return "  ".join(words)

    def seconds_left(self) -> float | None:
        if not self.total or self.first_step is None or self.count >= self.total:
            return None
        since, counted = self.first_step
        if self.count <= counted:
            return None
        rate = (self.count - counted) / max(time.monotonic() - since, 1e-9)
        return (self.total - self.count) / rate

    def end_line(self) -> None:
        if self.on_line:
            _write("\n")
            self.on_line = False


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    )


def _columns() -> int:
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return columns if columns > 0 else 80  # a terminal of unknown width says 0


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: progress is never worth a failure
        pass
