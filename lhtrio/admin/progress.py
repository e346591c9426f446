"""How a long operation shows its progress on stderr: rich's live bars on a terminal, plain
lines without one (``docs/cli.md``, "Waiting and progress").

A waiting verb opens a :class:`Display` (:func:`open_display`) and tells it what it sees:

* :meth:`Display.status` — the state of what is waited for (``volume db-1: attaching on node
  n1``): a line each time it changes; on a terminal also a spinner with the time spent;
* :meth:`Display.bar` — a transfer with a size (a replica's rebuild): on a terminal a bar with
  the percentage, the bytes, the rate and the time left (rich computes rate and ETA from the
  updates); without one a line each time it passes another tenth, or changes state, with the rate
  and time left computed here;
* :meth:`Display.done` — the end of a transfer (``rebuilt``, ``rebuild failed: ...``).

**A terminal** is stderr being one (and ``TERM`` not ``dumb``): stdout stays the result alone,
so ``URI=$(lhtrio volume attach db-1 --node n1)`` still shows the progress. Without a terminal
nothing but plain text is written: no ANSI escape, no carriage return.

rich does the terminal's part (live redraw, widths, rate and ETA estimates, colour rules such as
``NO_COLOR``): maintained, typed, and already what click users reach for — the hand-written
``\\r`` bar of ``lhtrio ctl replica add`` redraws one line only and computes nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import attrs
import click
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.spinner import Spinner
from rich.text import Text

from lhtrio.units import human_size

__all__ = ["Display", "PlainDisplay", "RichDisplay", "is_terminal", "open_display"]


class Display(Protocol):
    def status(self, text: str) -> None:
        """The state of what is waited for, now."""

    def bar(self, key: str, label: str, *, done: int, total: int, state: str) -> None:
        """Transfer ``key`` (``label`` for people) at ``done`` of ``total`` bytes, ``state``."""

    def done(self, key: str, text: str, *, ok: bool) -> None:
        """Transfer ``key`` ended (``text``: how; ``ok``: completed, not failed)."""

    def close(self) -> None:
        """Stop drawing (the last state stays on the screen)."""


def is_terminal() -> bool:
    """Whether stderr (where progress goes) is a terminal that takes escape sequences."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


@contextmanager
def open_display(*, terminal: bool | None = None) -> Iterator[Display]:
    """A :class:`RichDisplay` on a terminal (``terminal`` None: :func:`is_terminal`), else a
    :class:`PlainDisplay`; closed when the block ends, however it ends."""
    display: Display = (
        RichDisplay() if (is_terminal() if terminal is None else terminal) else PlainDisplay()
    )
    try:
        yield display
    finally:
        display.close()


# --- without a terminal ---------------------------------------------------------------------


@attrs.define
class _Transfer:
    """What the last line said of one transfer, and its first sample (for the rate)."""

    started: float
    first_done: int
    tenth: int = -1
    state: str = ""


def rate_and_eta(done: int, total: int, since: float, first_done: int, now: float) -> str:
    """``, 12.3 MiB/s, 5s left`` from the bytes done since the first sample; ``""`` before
    any rate can be told."""
    seconds = now - since
    moved = done - first_done
    if seconds <= 0 or moved <= 0:
        return ""
    rate = moved / seconds
    text = f", {human_size(int(rate))}/s"
    if total > done:
        text += f", {_duration((total - done) / rate)} left"
    return text


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


@attrs.define
class PlainDisplay:
    """Plain lines on stderr: a state when it changes, a transfer at each tenth and state."""

    _shown: str = ""
    _transfers: dict[str, _Transfer] = attrs.field(factory=dict)

    def status(self, text: str) -> None:
        if text != self._shown:
            click.echo(text, err=True)
            self._shown = text

    def bar(self, key: str, label: str, *, done: int, total: int, state: str) -> None:
        now = time.monotonic()
        transfer = self._transfers.setdefault(key, _Transfer(started=now, first_done=done))
        tenth = 10 * done // total if total else 0
        if tenth == transfer.tenth and state == transfer.state:
            return
        transfer.tenth, transfer.state = tenth, state
        if not total:  # not sized yet (a rebuild starting)
            click.echo(f"{label}: {state}", err=True)
            return
        speed = rate_and_eta(done, total, transfer.started, transfer.first_done, now)
        click.echo(
            f"{label}: {state} {100 * done // total}% ({human_size(done)} of "
            f"{human_size(total)}{speed})",
            err=True,
        )

    def done(self, key: str, text: str, *, ok: bool) -> None:
        self._transfers.pop(key, None)
        click.echo(text, err=True)

    def close(self) -> None:
        pass


# --- on a terminal --------------------------------------------------------------------------


class _Rate(ProgressColumn):
    """rich's estimate of a transfer's speed, in binary units as the bytes are (``5.1 MiB/s``)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.finished and task.elapsed:
            # over before two looks (a short rebuild): the mean rate over what was seen
            speed = (task.completed - task.fields.get("first", 0)) / task.elapsed
        return Text("?" if speed is None else f"{human_size(int(speed))}/s")


@attrs.define(eq=False)
class _View:
    """What the live display draws: the state with a spinner and the time spent (its own
    line, so a long state never squeezes the bars), then the bars."""

    progress: Progress
    spinner: Spinner = attrs.field(factory=lambda: Spinner("dots"))
    state: str = ""
    since: float = attrs.field(factory=time.monotonic)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.state:
            spent = int(time.monotonic() - self.since)
            self.spinner.update(text=Text(f"{self.state} ({spent // 60}:{spent % 60:02d})"))
            yield self.spinner
        if self.progress.tasks:
            yield self.progress.get_renderable()


@attrs.define(eq=False)
class RichDisplay:
    """rich's live display on stderr: a spinner with the state, a bar per transfer."""

    console: Console = attrs.field(factory=lambda: Console(stderr=True))
    _view: _View = attrs.field(init=False)
    _live: Live = attrs.field(init=False)
    _bars: dict[str, TaskID] = attrs.field(factory=dict)
    _totals: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            _Rate(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._view = _View(progress)
        self._live = Live(
            self._view,
            console=self.console,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    @property
    def _progress(self) -> Progress:
        return self._view.progress

    def status(self, text: str) -> None:
        if text == self._view.state:
            return
        if self._view.state:
            self._live.console.print(self._view.state, highlight=False)  # the history stays
        self._view.state, self._view.since = text, time.monotonic()

    def bar(self, key: str, label: str, *, done: int, total: int, state: str) -> None:
        description = f"{label}: {state}"
        self._totals[key] = total
        if key not in self._bars:
            # made at 0 then moved: rich takes the first update as a sample, so the rate (and
            # the time left) shows from the second look on
            self._bars[key] = self._progress.add_task(description, total=total or None, first=done)
        self._progress.update(
            self._bars[key], description=description, total=total or None, completed=done
        )

    def done(self, key: str, text: str, *, ok: bool) -> None:
        task = self._bars.pop(key, None)
        total = self._totals.pop(key, 0)
        if task is not None:
            if ok:
                self._progress.update(task, total=total or 1, completed=total or 1)
            self._progress.update(task, description=text)
            self._progress.stop_task(task)
        else:
            self._live.console.print(text, highlight=False)

    def close(self) -> None:
        last, self._view.state = self._view.state, ""
        self._live.refresh()  # the last frame stays: the bars, without the spinner
        self._live.stop()
        if last:
            self.console.print(last, highlight=False)
