"""The benchmark's @pxt.query functions (the table must exist first: @pxt.query evaluates its body now)."""

import pixeltable as pxt

from bench.bench_app.schema import items


@pxt.query
def lookup(id: int):
    """One row by primary key (served as GET /lookup?id=N, one_row)."""
    return items.where(items.id == id).select(items.id, items.name, items.name_upper, items.name_len)


@pxt.query
def search(start: int):
    """A cheap range search: the (up to) 10 rows with start <= id < start + 10."""
    return (
        items.where((items.id >= start) & (items.id < start + 10))
        .order_by(items.id)
        .select(items.id, items.name, items.name_len)
    )
