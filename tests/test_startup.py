"""pxtserve.startup: serve's start-up pauses the cyclic GC and always hands it back, frozen start-up included."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pxtserve import startup


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    yield
    startup.resume()
    gc.unfreeze()
    gc.enable()


def test_serve_pauses_the_collector_and_resume_freezes_what_start_up_made():
    startup.pause_for_serve(["serve", "demo", "--config", "x.toml"])
    assert not gc.isenabled()
    made_during_start_up = [object() for _ in range(10)]
    startup.resume()
    assert gc.isenabled() and gc.get_freeze_count() >= len(made_during_start_up)


@pytest.mark.parametrize("args", [["migrate"], ["qcluster"], [], ["help", "serve"]])
def test_other_commands_keep_the_collector(args):
    startup.pause_for_serve(args)
    assert gc.isenabled()


def test_resume_leaves_a_collector_it_did_not_pause_alone():
    gc.disable()  # someone else's pause (an embedding application's)
    startup.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_nested_pause_is_ended_by_the_outer_one():
    startup.pause()
    with startup.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the build inside serve's start-up: serve resumes later
    startup.resume()
    assert gc.isenabled()
    with startup.paused():  # a `--workers N` process: its own pause, ended with the build
        assert not gc.isenabled()
    assert gc.isenabled()
