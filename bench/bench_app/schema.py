"""The benchmark table `bench.items`, created on import (idempotently): what `modules` in service.toml points at."""

import pixeltable as pxt

TABLE = "bench.items"

pxt.create_dir("bench", if_exists="ignore")

items = pxt.create_table(
    TABLE,
    {"id": pxt.Required[pxt.Int], "name": pxt.String},
    primary_key="id",
    if_exists="ignore",
)
# two cheap computed columns, so every write also computes something
items.add_computed_column(name_upper=items.name.upper(), if_exists="ignore")
items.add_computed_column(name_len=items.name.len(), if_exists="ignore")
