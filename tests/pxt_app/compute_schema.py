"""Tables and views the compute-route tests serve, created on import (idempotently).

Compute routes run `Table.compute()`, which stores nothing, so the tests count these tables' rows
before and after their requests. Every name starts with `compute_`, apart from the other test tables.
"""

from collections.abc import Iterator
from typing import TypedDict

import pixeltable as pxt

pxt.create_dir("pxtserve_test", if_exists="ignore")


@pxt.udf
def compute_inverse(x: int) -> float:
    if x == 0:
        raise ValueError("compute_inverse: x must not be zero")
    return 1.0 / x


class Word(TypedDict):
    word: str


@pxt.iterator
def split_words(text: str) -> Iterator[Word]:
    """One row per whitespace-separated word, in order; none for a blank text."""
    for word in text.split():
        yield Word(word=word)


# (1) a base table with a primary key, plain columns and computed ones; `inverse` raises for x == 0
items = pxt.create_table(
    "pxtserve_test.compute_items",
    {
        "id": pxt.Required[pxt.Int],
        "text": pxt.String,
        "x": pxt.Int,
        "tag": pxt.String | None,
    },
    primary_key="id",
    if_exists="ignore",
)
items.add_computed_column(text_upper=items.text.upper(), if_exists="ignore")
items.add_computed_column(text_len=items.text.len(), if_exists="ignore")
items.add_computed_column(inverse=compute_inverse(items.x), if_exists="ignore")

# (2) a filtered view (no iterator) with a computed column of its own: rows with x < 0 are dropped
nonneg = pxt.create_view("pxtserve_test.compute_nonneg", items.where(items.x >= 0), if_exists="ignore")
nonneg.add_computed_column(x_squared=nonneg.x * nonneg.x, if_exists="ignore")

# (3) an iterator view: one row per word of `body` (none for a blank body), with a computed column of its own
docs = pxt.create_table(
    "pxtserve_test.compute_docs",
    {"doc_id": pxt.Int, "body": pxt.String, "lang": pxt.String | None},
    if_exists="ignore",
)
words = pxt.create_view("pxtserve_test.compute_words", docs, iterator=split_words(docs.body), if_exists="ignore")
words.add_computed_column(word_upper=words.word.upper(), if_exists="ignore")

# (4) an image table with computed images, and a filtered view over it (images with side < 4 are dropped)
images = pxt.create_table(
    "pxtserve_test.compute_images",
    {"image": pxt.Image, "side": pxt.Int, "label": pxt.String | None},
    if_exists="ignore",
)
images.add_computed_column(thumb=images.image.resize((images.side, images.side)), if_exists="ignore")
images.add_computed_column(width=images.image.width, if_exists="ignore")
big_images = pxt.create_view("pxtserve_test.compute_big_images", images.where(images.side >= 4), if_exists="ignore")
big_images.add_computed_column(gray=big_images.thumb.convert("L"), if_exists="ignore")

# every table and view above, by name: the tests count their rows before and after requests
ALL = {
    "compute_items": items,
    "compute_nonneg": nonneg,
    "compute_docs": docs,
    "compute_words": words,
    "compute_images": images,
    "compute_big_images": big_images,
}
