"""Bad input, fuzzed: schemathesis against the demo service's own OpenAPI document.

A real `manage.py serve demo` runs as a subprocess; schemathesis's engine (what `st run`
runs) generates requests for every documented operation, schema-valid and schema-violating
ones (the coverage phase's boundary values, then a bounded, seeded Hypothesis run), and
checks each response: no 5xx, a documented status code and content type, and a body that
matches the schema documented for that status. A failure names the operation, the check,
the response and the request as a curl command.

The engine is driven directly rather than through schemathesis's pytest integration
(`schemathesis.pytest.from_fixture`), which does not work with pytest 9.2 (it sets
`Node._nodeid`, which pytest no longer has). The same run from the command line: README.md, "Fuzzing the API".

The fuzz's findings are pinned below as plain requests: values the store cannot hold
(beyond int64, NUL or lone surrogates in text, non-finite floats, JSON too deep) are a 422
naming the field, never a 500.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import events, from_schema

from tests.processes import free_port, stop_process

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo" / "service.toml"

SEED = 42
# generated cases per operation in the fuzzing phase; the coverage phase adds its own boundary and
# schema-violating cases: with the demo's 14 documented operations the run sends about 700 requests
MAX_EXAMPLES = 30
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]
CONFIG = {
    "seed": SEED,
    "workers": 1,
    "request-timeout": 30,
    # every case of every operation runs, so one failure does not hide the next
    "continue-on-failure": True,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
}
# the demo's tables (primary key `id`): rows the fuzz inserted are deleted afterwards
DEMO_TABLES = ("demo.notes", "demo.images", "demo.videos")
INT64_MAX = 2**63 - 1


def _ids(table: str) -> set[int]:
    import pixeltable as pxt

    t = pxt.get_table(table)
    return {row["id"] for row in t.select(t.id).collect()}


def _delete_rows_not_in(table: str, keep: set[int]) -> None:
    import pixeltable as pxt

    t = pxt.get_table(table)
    t.delete(where=~t.id.isin(sorted(keep)) if keep else None)


@pytest.fixture(scope="module")
def demo_server(pxt_tables: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`manage.py serve demo` on a free port, on the session's Pixeltable; yields its base URL."""
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PXTSERVE_VAR_DIR": str(tmp)}
    for name in ("PXTSERVE_SERVICE_JSON", "PXTSERVE_CONFIG", "PXTSERVE_SERVICE"):
        env.pop(name, None)
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "demo", "--config", str(DEMO),
             "--host", "127.0.0.1", "--port", str(port), "--no-workers"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    before: dict[str, set[int]] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "server did not start:\n" + log_path.read_text(errors="replace")
            time.sleep(0.3)
        before = {table: _ids(table) for table in DEMO_TABLES}
        yield base
    finally:
        stop_process(proc, timeout=30)
        # the tables are shared by the session's tests: leave them with the rows they had
        for table, keep in before.items():
            _delete_rows_not_in(table, keep)


def _describe(label: str, check: Any, recorder: Any, case_id: str) -> str:
    info = check.failure_info
    lines = [f"{label}: {check.name}: {info.failure.title}", "    " + info.failure.message.replace("\n", "\n    ")]
    interaction = recorder.interactions.get(case_id)
    if interaction is not None and interaction.response is not None:
        body = interaction.response.content[:500].decode(errors="replace")
        lines.append(f"    response: [{interaction.response.status_code}] {body}")
    lines.append(f"    request: {info.code_sample}")
    return "\n".join(lines)


def test_demo_api_survives_a_seeded_fuzz(demo_server: str) -> None:
    """Every generated request, valid or not, gets a documented, schema-conforming, non-5xx answer."""
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_url(f"{demo_server}/openapi.json", config=config)
    # every documented operation is fuzzed: the router's media files are not documented, and its job
    # poll only for a router with a background route (the demo has none; see test_job_poll_of_junk_ids)
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert len(labels) == 14 and not any(label.startswith(("GET /media/", "GET /jobs/")) for label in labels), labels
    failures: dict[tuple[str, ...], str] = {}
    errors: list[str] = []
    sent = 0
    finished = None
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            sent += len(recorder.interactions)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        key = (recorder.label, check.name, check.failure_info.failure.title)
                        failures.setdefault(key, _describe(recorder.label, check, recorder, case_id))
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event
    print(f"\nfuzz: {sent} requests to {len(labels)} operations in {time.monotonic() - started:.1f} s (seed {SEED})")
    assert not errors, "schemathesis errors:\n" + "\n".join(errors)
    # server errors first
    ordered = sorted(failures.items(), key=lambda item: (item[0][1] != "not_a_server_error", item[0]))
    assert not failures, f"{len(failures)} kind(s) of failure:\n\n" + "\n\n".join(text for _, text in ordered)
    assert finished is not None and finished.stop_reason == "completed", finished
    assert sent >= 300, f"only {sent} requests were sent"


# --- what the fuzz found, as plain requests ----------------------------------------------


def _post(base: str, path: str, raw: str) -> httpx.Response:
    return httpx.post(f"{base}{path}", content=raw.encode(), headers={"Content-Type": "application/json"}, timeout=30)


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        # beyond int64: PostgreSQL's "bigint out of range" was a 500
        ("/notes", json.dumps({"id": INT64_MAX + 1, "title": "t", "body": "b"}), "id"),
        ("/notes/update", json.dumps({"id": INT64_MAX + 1, "title": "t"}), "id"),
        ("/notes/delete", json.dumps({"id": -(2**63) - 1}), "id"),
        ("/images/delete", json.dumps({"id": -128073686875166315226607608922112}), "id"),
        ("/images/thumbnail", json.dumps({"id": 2**64}), "id"),
        ("/notes/search", json.dumps({"tag": "x", "limit": 99999999999999999999}), "limit"),
        # NUL: "PostgreSQL text fields cannot contain NUL" in a WHERE was a 500 (an insert replaced it by a space)
        ("/notes/delete-by-tag", json.dumps({"tag": "a\x00"}), "tag"),
        ("/notes", json.dumps({"id": 1, "title": "a\x00b", "body": "b"}), "title"),
        # a media path with NUL: "embedded null byte" was a 500
        ("/images", json.dumps({"id": 1, "image": "a\x00"}), "image"),
        # a lone surrogate (valid JSON): "surrogates not allowed" when PostgreSQL got it was a 500
        ("/notes", '{"id": 1, "title": "\\ud800", "body": "b"}', "title"),
    ],
)
def test_values_the_store_cannot_hold_are_a_422_naming_the_field(demo_server, path, raw, field):
    r = _post(demo_server, path, raw)
    assert r.status_code == 422, r.text
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field], r.text


def test_int64_bounds_are_served_and_beyond_them_is_a_422(demo_server):
    r = httpx.get(f"{demo_server}/notes/lookup", params={"id": INT64_MAX})
    assert r.status_code == 404, r.text  # a valid key, no such row
    r = httpx.get(f"{demo_server}/notes/lookup", params={"id": "-25884429398524451211247091712"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "id"], r.text


@pytest.mark.parametrize("job_id", ["%00", "x" * 4000, "%ED%A0%80", "-1", "%27%20OR%201=1%20--"])
def test_job_poll_of_junk_ids_is_a_404(demo_server, job_id):
    r = httpx.get(f"{demo_server}/jobs/{job_id}", timeout=30)
    assert r.status_code == 404 and r.json()["detail"]["error_code"] == "JOB_NOT_FOUND", r.text


def test_documented_error_shapes_match_the_answers(demo_server):
    doc = httpx.get(f"{demo_server}/openapi.json").json()
    responses = doc["paths"]["/notes"]["post"]["responses"]
    assert {"400", "404", "409", "413", "422", "500", "504", "200"} <= set(responses)
    for code, shapes in {
        "422": {"ErrorResponse", "ValidationErrorResponse"},
        "400": {"ErrorResponse", "MessageResponse"},
    }.items():
        any_of = responses[code]["content"]["application/json"]["schema"]["anyOf"]
        assert {s["$ref"].rsplit("/", 1)[-1] for s in any_of} == shapes
    # Ninja's own answers: a body that is not JSON, a request that does not validate
    r = _post(demo_server, "/notes", "\x00")
    assert r.status_code == 400 and isinstance(r.json()["detail"], str), r.text
    r = _post(demo_server, "/notes", "{}")
    assert r.status_code == 422 and isinstance(r.json()["detail"], list), r.text
    # a Pixeltable error keeps its code: {"detail": {"error_code", "message"}}
    r = _post(demo_server, "/notes/search", json.dumps({"tag": "x", "limit": -1}))
    assert r.status_code == 422 and r.json()["detail"]["error_code"] == "INVALID_ARGUMENT", r.text


# --- the same limits on the column types the demo lacks (float, JSON) ----------------------------

ITEMS = """
[[service]]
name = "bad-input"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
"""


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        # Python's json accepts NaN/Infinity; stored, they made the response invalid JSON
        ('"name": "n", "score": NaN', "score"),
        ('"name": "n", "score": -Infinity', "score"),
        # jsonb: "unsupported Unicode escape sequence" / "invalid input syntax for type json" were 500s
        ('"name": "n", "meta": {"k": "a\\u0000b"}', "meta"),
        ('"name": "n", "meta": {"k\\u0000": 1}', "meta"),
        ('"name": "n", "meta": {"k": [NaN]}', "meta"),
        ('"name": "n", "meta": ["\\udc00"]', "meta"),
        ('"name": "\\ud800x"', "name"),
        # Pixeltable walks JSON recursively: 900 levels was a RecursionError (500)
        ('"name": "n", "meta": ' + "[" * 900 + "]" * 900, "meta"),
    ],
)
def test_float_and_json_inputs_the_store_cannot_hold_are_a_422(serve, new_id, fields, field):
    client = serve(ITEMS)
    r = client.post("/items", f'{{"id": {new_id()}, {fields}}}', content_type="application/json")
    assert r.status_code == 422, r.content
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field], r.content


def test_float_and_json_inputs_within_the_limits_are_stored(serve, new_id):
    client = serve(ITEMS)
    meta = {"deep": [[[[[[[[[[1]]]]]]]]]], "big": 10**30, "text": "é ☃ \U0001f600"}
    body = {"id": new_id(), "name": "n", "score": -1.5e300, "meta": meta}
    r = client.post("/items", json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.content
    assert r.json()["meta"] == meta and r.json()["score"] == -1.5e300
