"""A query slow enough to be caught running, for the restart tests of background jobs."""

import time

import pixeltable as pxt

from tests.pxt_app.schema import items


@pxt.udf
def slowly(name: str, seconds: float) -> str:
    time.sleep(seconds)
    return name


@pxt.query
def slow_name(id: int, seconds: float = 30.0):
    return items.where(items.id == id).select(items.id, name=slowly(items.name, seconds))
