"""Tables the idempotency tests serve, created on import (idempotently).

`idem_events` has no primary key, so a request that runs twice stores two rows, and a computed column that
sleeps for the row's `delay`, so a request can be caught running. `idem_notes` has one, for updates and deletes.
"""

import time

import pixeltable as pxt

pxt.create_dir("pxtserve_test", if_exists="ignore")


@pxt.udf
def idem_slowly(name: str, delay: float) -> str:
    time.sleep(delay)
    return name.upper()


events = pxt.create_table("pxtserve_test.idem_events", {"name": pxt.String, "delay": pxt.Float}, if_exists="ignore")
events.add_computed_column(shout=idem_slowly(events.name, events.delay), if_exists="ignore")

notes = pxt.create_table(
    "pxtserve_test.idem_notes",
    {"id": pxt.Required[pxt.Int], "title": pxt.String},
    primary_key="id",
    if_exists="ignore",
)
notes.add_computed_column(title_upper=notes.title.upper(), if_exists="ignore")


@pxt.query
def events_named(name: str):
    return events.where(events.name == name).select(events.name, events.shout)


@pxt.query
def note_by_id(id: int):
    return notes.where(notes.id == id).select(notes.id, notes.title)
