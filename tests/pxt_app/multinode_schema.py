"""The table of the multi-node test, in a catalog on a shared PostgreSQL."""

import pixeltable as pxt

pxt.create_dir("multinode", if_exists="ignore")
events = pxt.create_table(
    "multinode.events", {"id": pxt.Required[pxt.Int], "text": pxt.String}, primary_key="id", if_exists="ignore"
)
events.add_computed_column(shout=events.text.upper(), if_exists="ignore")


@pxt.query
def event_by_id(id: int):
    return events.where(events.id == id).select(events.id, events.text, events.shout)
