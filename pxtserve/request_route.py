"""The route a request was served by, as a label for metrics and traces.

The label is the URL pattern the request matched, written as it was declared
(`/notes/lookup`, `/api/items/{id}`), never the raw URL: a raw URL carries ids and
would give a metric a label value per row. Requests that matched no route share one
label.
"""

from __future__ import annotations

import re
from typing import Any

UNMATCHED = "unmatched"
# Django's path converters, as Ninja writes a declared `{name}`: `<name>` or `<int:name>`
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


# labels by the URL pattern matched: the declared routes, a bounded set, so each is written once (a request's
# metrics and its span both ask)
_labels: dict[str, str] = {}


def route_label(request: Any) -> str:
    """The declared path of the route that served `request` (its mount prefix included), or "unmatched"."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED
    label = _labels.get(match.route)
    if label is None:
        label = _labels[match.route] = "/" + _CONVERTER.sub(r"{\1}", match.route)
    return label
