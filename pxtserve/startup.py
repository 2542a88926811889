"""Server start-up with Python's cyclic garbage collector paused.

Starting a server imports Django, Ninja and Pixeltable and builds the service: a
few million objects, none of them garbage. The collector runs by allocation
counts, so during start-up it scans those objects again and again, for about a
sixth of the time from launch to serving (figures: bench/README.md, "Restart").
`serve` pauses it from the very start (manage.py and the console script, before
Django is imported) and resumes it once the service is built, first freezing what
start-up made (`gc.freeze`: long-lived objects, never scanned again, which also
keeps their memory pages shared with forked children).

Only a pause this module made is resumed: code that calls `resume()` in a process
that never paused (a test calling the serve command) leaves the collector alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_paused = False


def pause() -> None:
    """Pause the collector until `resume()` (when it is running: a pause never nests)."""
    global _paused
    if not _paused and gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """End this module's pause: freeze what start-up made, then collect again as usual."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


@contextmanager
def paused() -> Iterator[None]:
    """The block runs with the collector paused (unless an outer pause already holds it, which then ends it)."""
    outer = _paused
    pause()
    try:
        yield
    finally:
        if not outer:
            resume()


def pause_for_serve(args: list[str]) -> None:
    """What manage.py and the console script call first: pause when the command is `serve`
    (which resumes before it serves), never for other commands, which may run for long."""
    if args[:1] == ["serve"]:
        pause()
