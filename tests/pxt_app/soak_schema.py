"""The table of the fault tests and of bench/soak.py, created on import (idempotently).

Every row is self-checking: `name` is "c<client>-k<id>-v<n>", and the computed
columns follow from it, so a row that was half written (a column missing, a
computed value out of step with its inputs) is visible without knowing which
request wrote it.
"""

import pixeltable as pxt

pxt.create_dir("pxtserve_soak", if_exists="ignore")

rows = pxt.create_table(
    "pxtserve_soak.rows",
    {"id": pxt.Required[pxt.Int], "client": pxt.Int, "n": pxt.Int, "name": pxt.String},
    primary_key="id",
    if_exists="ignore",
)
rows.add_computed_column(name_upper=rows.name.upper(), if_exists="ignore")
rows.add_computed_column(n_double=rows.n * 2, if_exists="ignore")


def expected_name(client: int, key: int, n: int) -> str:
    return f"c{client}-k{key}-v{n}"


def row_problems(row: dict) -> list[str]:
    """Why a stored row is not a complete, consistent row (empty: it is)."""
    problems = []
    key = row.get("id")
    for column in ("id", "client", "n", "name", "name_upper", "n_double"):
        if row.get(column) is None:
            problems.append(f"id {key}: column {column} is null")
    if problems:
        return problems
    if row["name"] != expected_name(row["client"], key, row["n"]):
        problems.append(f"id {key}: name {row['name']!r} does not match client {row['client']}, n {row['n']}")
    if row["name_upper"] != row["name"].upper():
        problems.append(f"id {key}: name_upper {row['name_upper']!r} is not upper({row['name']!r})")
    if row["n_double"] != 2 * row["n"]:
        problems.append(f"id {key}: n_double {row['n_double']} is not 2 * {row['n']}")
    return problems


@pxt.query
def soak_by_id(id: int):
    return rows.where(rows.id == id).select(rows.id, rows.client, rows.n, rows.name, rows.name_upper, rows.n_double)
