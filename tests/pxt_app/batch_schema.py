"""Tables and queries of the batch-route and paged-query tests, created on import (idempotently).

`batch_items` has a primary key (duplicate keys fail a batch) and a computed column that raises for x == 0;
`paged_items` holds fixed rows to page through (inserted once per Pixeltable home).
"""

import pixeltable as pxt

pxt.create_dir("pxtserve_test", if_exists="ignore")


@pxt.udf
def batch_inverse(x: int) -> float:
    if x == 0:
        raise ValueError("batch_inverse: x must not be zero")
    return 1.0 / x


batch_items = pxt.create_table(
    "pxtserve_test.batch_items",
    {"id": pxt.Required[pxt.Int], "name": pxt.String, "x": pxt.Int},
    primary_key="id",
    if_exists="ignore",
)
batch_items.add_computed_column(name_upper=batch_items.name.upper(), if_exists="ignore")
batch_items.add_computed_column(inverse=batch_inverse(batch_items.x), if_exists="ignore")

# 23 rows tagged "p" (pages of 5: 5+5+5+5+3), 4 tagged "q"
PAGED_TAGS = {"p": 23, "q": 4}
paged_items = pxt.create_table(
    "pxtserve_test.paged_items",
    {"id": pxt.Required[pxt.Int], "tag": pxt.String, "n": pxt.Int},
    primary_key="id",
    if_exists="ignore",
)
if paged_items.count() == 0:
    rows = [(tag, i) for tag, count in PAGED_TAGS.items() for i in range(count)]
    paged_items.insert([{"id": k, "tag": tag, "n": i * i} for k, (tag, i) in enumerate(rows)])


@pxt.query
def paged_by_tag(tag: str):
    return paged_items.where(paged_items.tag == tag).order_by(paged_items.id).select(paged_items.id, paged_items.n)


@pxt.query
def paged_by_tag_capped(tag: str, cap: int = 7):
    """A query with its own limit: paging cuts the capped result, as the unpaged route answers it."""
    return (
        paged_items.where(paged_items.tag == tag)
        .order_by(paged_items.id)
        .select(paged_items.id, paged_items.n)
        .limit(cap)
    )


@pxt.query
def paged_ids(tag: str):
    return paged_items.where(paged_items.tag == tag).order_by(paged_items.id).select(paged_items.id)


@pxt.query(return_scalar=True)
def paged_ns(tag: str):
    """One selected column, answered as values: a page's rows are the values."""
    return paged_items.where(paged_items.tag == tag).order_by(paged_items.id).select(paged_items.n)
