"""Tables the tests serve, created on import (idempotently), like a user's schema module."""

import pixeltable as pxt

pxt.create_dir("pxtserve_test", if_exists="ignore")


@pxt.udf
def checked_inverse(x: int) -> float:
    if x == 0:
        raise ValueError("x must not be zero")
    return 1.0 / x


items = pxt.create_table(
    "pxtserve_test.items",
    {
        "id": pxt.Required[pxt.Int],
        "name": pxt.String,
        "score": pxt.Float | None,
        "meta": pxt.Json | None,
        "tag": pxt.String | None,
    },
    primary_key="id",
    if_exists="ignore",
)
items.add_computed_column(name_upper=items.name.upper(), if_exists="ignore")
items.add_computed_column(score_double=items.score * 2, if_exists="ignore")

nopk = pxt.create_table("pxtserve_test.nopk", {"name": pxt.String, "n": pxt.Int | None}, if_exists="ignore")

fragile = pxt.create_table(
    "pxtserve_test.fragile", {"id": pxt.Required[pxt.Int], "x": pxt.Int}, primary_key="id", if_exists="ignore"
)
fragile.add_computed_column(inverse=checked_inverse(fragile.x), if_exists="ignore")

images = pxt.create_table(
    "pxtserve_test.images",
    {"id": pxt.Required[pxt.Int], "image": pxt.Image, "tag": pxt.String | None},
    primary_key="id",
    if_exists="ignore",
)
images.add_computed_column(thumb=images.image.resize((8, 8)), if_exists="ignore")

# every media kind, for upload round trips
media = pxt.create_table(
    "pxtserve_test.media",
    {
        "id": pxt.Required[pxt.Int],
        "image": pxt.Image | None,
        "video": pxt.Video | None,
        "audio": pxt.Audio | None,
        "document": pxt.Document | None,
        "width": pxt.Int | None,
        "height": pxt.Int | None,
        "ratio": pxt.Float | None,
        "flag": pxt.Bool | None,
        "note": pxt.String | None,
        "extra": pxt.Json | None,
    },
    primary_key="id",
    if_exists="ignore",
)

# the spec's upload example: POST /resize -F image=@photo.jpg -F width=640 -F height=480
resize = pxt.create_table(
    "pxtserve_test.resize",
    {"image": pxt.Image, "width": pxt.Int, "height": pxt.Int},
    if_exists="ignore",
)
resize.add_computed_column(resized=resize.image.resize((resize.width, resize.height)), if_exists="ignore")


@pxt.udf
def amplified(x: float) -> float:
    # 10.0 -> inf: a float that JSON cannot carry
    return x * 1e308


# output rendering: timestamps keep their microseconds, non-finite floats are still valid JSON
outputs = pxt.create_table(
    "pxtserve_test.outputs",
    {"id": pxt.Required[pxt.Int], "at": pxt.Timestamp | None, "x": pxt.Float | None},
    primary_key="id",
    if_exists="ignore",
)
outputs.add_computed_column(amplified=amplified(outputs.x), if_exists="ignore")
