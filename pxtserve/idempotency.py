"""Idempotent retries: a request to a route that changes data, sent with `Idempotency-Key: <key>`, runs at most
once per key and route within IDEMPOTENCY_TTL.

- The first request claims the key: it inserts a "running" row (pxtserve.models.IdempotencyKey), unique on
  (route, key), into Django's database, so the claim holds across `--workers` processes and nodes. When it is
  answered, the row keeps the status, headers and body; a repeat of the same request gets them again (with
  `Idempotent-Replayed: true`) and runs nothing. The key with a different request is a 422; a repeat while the
  first still runs, a 409.
- "The same request" is the request as the route validated it (its inputs, uploads by name and sha256), not its
  bytes: a multipart body's boundary differs on every retry, and a JSON body's spacing and key order mean nothing.
- 4xx answers are kept (the request was answered). A 5xx or an exception deletes the claim, so that a retry runs
  again: the key is not stuck for the TTL (a 504 or a failed export can follow the write, so that retry may write
  again or meet the duplicate key). A client that disconnects does not stop its request: it runs on and records
  its answer for the retry.
- A running claim is abandoned when its process is gone (same host, its pid dead) or it is older than
  REQUEST_TIMEOUT + 60 s (1 h without a REQUEST_TIMEOUT): the next request with the key takes it over.
- Keys older than IDEMPOTENCY_TTL count as unused; they are pruned as jobs are (at start) and at most every
  10 minutes by each process that claims keys.

Routes that do not change data (queries, compute without export_sql) ignore the header, and a request without it
costs one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from pxtserve import conf
from pxtserve.errors import ApiError, error_response
from pxtserve.jobs.store import db_connection
from pxtserve.throttle import Throttle

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

    from pxtserve.models import IdempotencyKey
    from pxtserve.routes.operation import Operation

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_META_KEY = "HTTP_IDEMPOTENCY_KEY"
_logger = logging.getLogger("pxtserve")
_VALID_KEY = re.compile(r"[ -~]{1,255}")
# a running claim this much older than REQUEST_TIMEOUT was answered by now, or its process died
_ABANDON_MARGIN_S = 60.0
_ABANDON_WITHOUT_TIMEOUT_S = 3600.0
_CLAIM_ATTEMPTS = 5
_prune = Throttle(600.0)
# requests whose client left, still running to record their answer: the event loop holds tasks only weakly
_orphans: set[asyncio.Future[Any]] = set()

View = Callable[..., Any]


def guard(view: View, operation: Operation, route: str) -> View:
    """`view`, honouring Idempotency-Key if the route changes data (else `view` itself); `route` is its route key."""
    if not operation.changes_data:
        return view

    # functools.wraps keeps the view's __signature__, from which Ninja builds the request's parameters
    @functools.wraps(view)
    async def idempotent_view(request: HttpRequest, **params: Any) -> Any:
        key = request.META.get(_META_KEY)
        if key is None:
            return await view(request, **params)
        return await _run_once(view, request, params, operation, route, key)

    return idempotent_view


def document(operation: Operation, openapi_extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """The route's `openapi_extra` with the optional Idempotency-Key header, if the route honours it."""
    if not operation.changes_data:
        return openapi_extra
    parameter = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": (
            "run this request at most once: a repeat with the same key and request gets the first answer again "
            f"(with `{REPLAYED_HEADER}: true`); the key with another request is a 422, while the first runs a 409"
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"},
    }
    extra = dict(openapi_extra or {})
    extra["parameters"] = [*extra.get("parameters", []), parameter]
    return extra


@dataclass(frozen=True)
class Claim:
    """A key this request holds: its row, and the token that tells whether it still holds it."""

    pk: int
    token: str
    route: str
    key: str


@dataclass(frozen=True)
class Answer:
    """A recorded answer: what the first request was answered."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def response(self, *, replayed: bool) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        if replayed:
            response[REPLAYED_HEADER] = "true"
        return response


async def _run_once(
    view: View, request: HttpRequest, params: dict[str, Any], operation: Operation, route: str, key: str
) -> HttpResponse:
    if not _VALID_KEY.fullmatch(key):
        return error_response(
            ApiError(400, "INVALID_IDEMPOTENCY_KEY", f"the {HEADER} header must be 1 to 255 printable ASCII characters")
        )
    inputs = operation.inputs_from(params.get("payload"))
    uploads = {name: value for name, value in params.items() if name != "payload" and value is not None}
    try:
        # a thread of its own, as job submissions: the Pixeltable pool's threads are for Pixeltable
        claimed = await sync_to_async(claim, thread_sensitive=False)(route, key, inputs, uploads)
    except ApiError as exc:
        response = error_response(exc)
        if exc.status == 409:
            response["Retry-After"] = "1"
        return response
    if isinstance(claimed, Answer):
        return claimed.response(replayed=True)
    run = asyncio.ensure_future(_run_and_record(view, request, params, claimed))
    try:
        return await asyncio.shield(run)
    except asyncio.CancelledError:
        # the client left (Django cancels the view): the write goes on, so its answer is still recorded
        if not run.done():
            _orphans.add(run)
            run.add_done_callback(_orphans.discard)
        raise


async def _run_and_record(view: View, request: HttpRequest, params: dict[str, Any], claimed: Claim) -> HttpResponse:
    try:
        response = await view(request, **params)
    except BaseException:
        await sync_to_async(release, thread_sensitive=False)(claimed)
        raise
    if response.status_code >= 500:
        await sync_to_async(release, thread_sensitive=False)(claimed)
        return response
    if response.streaming:
        # a file: read to be recorded (its chunks are read off the event loop), and answered from those bytes
        try:
            body = b"".join([part async for part in response])
        finally:
            response.close()
        answer = answer_of(response, body)
        response = answer.response(replayed=False)
    else:
        answer = answer_of(response)
    try:
        await sync_to_async(record, thread_sensitive=False)(claimed, answer)
    except Exception:
        # the request did its work: answer it; the claim stays running until it counts as abandoned
        _logger.exception("%s: cannot record the answer of the request with %s %r", claimed.route, HEADER, claimed.key)
    return response


def request_fingerprint(route: str, inputs: Mapping[str, Any], uploads: Mapping[str, UploadedFile]) -> str:
    """sha256 of the request as the route validated it: the route, the inputs, each upload's name and digest."""
    files = {name: {"name": upload.name, "sha256": _digest(upload)} for name, upload in uploads.items()}
    canonical = json.dumps(
        {"route": route, "inputs": inputs, "uploads": files}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _digest(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():  # from the start; the view's save reads it from the start again
        digest.update(chunk)
    return digest.hexdigest()


def claim(route: str, key: str, inputs: Mapping[str, Any], uploads: Mapping[str, UploadedFile]) -> Claim | Answer:
    """Claim `key` on `route` for this request, or the recorded answer of the same request; else an ApiError
    (422: the key was used for another request; 409: its request still runs)."""
    from pxtserve.models import IdempotencyKey

    fingerprint = request_fingerprint(route, inputs, uploads)
    with db_connection():
        if _prune.due():
            _delete_expired()
        for _ in range(_CLAIM_ATTEMPTS):
            now = timezone.now()
            fields = {
                "fingerprint": fingerprint,
                "status": IdempotencyKey.Status.RUNNING,
                "token": uuid.uuid4().hex,
                "owner": _owner(),
                "created_at": now,
            }
            try:
                with transaction.atomic():
                    row = IdempotencyKey.objects.create(route=route, key=key, **fields)
                return Claim(row.pk, row.token, route, key)
            except IntegrityError:
                pass  # someone has it: see how it stands
            existing = IdempotencyKey.objects.filter(route=route, key=key).first()
            if existing is None:
                continue  # released meanwhile
            if _reusable(existing, now):
                # taken over only as it was read (its token): of two requests doing so at once, one wins
                cleared = {"finished_at": None, "response_status": None, "response_headers": {}, "response_body": None}
                if IdempotencyKey.objects.filter(pk=existing.pk, token=existing.token).update(**fields, **cleared):
                    return Claim(existing.pk, fields["token"], route, key)
                continue
            if existing.fingerprint != fingerprint:
                raise ApiError(
                    422,
                    "IDEMPOTENCY_KEY_REUSED",
                    f"the {HEADER} {key!r} was used for a different request to {route}; send a new key with a new "
                    "request",
                )
            if existing.status == IdempotencyKey.Status.RUNNING:
                break
            return Answer(
                existing.response_status or 200, existing.response_headers, bytes(existing.response_body or b"")
            )
    raise ApiError(
        409, "IDEMPOTENCY_KEY_IN_USE", f"a request with this {HEADER} is still running; retry to get its answer"
    )


def answer_of(response: HttpResponse, streamed_body: bytes | None = None) -> Answer:
    """What is recorded of a response: its content, or the body read from a streamed one."""
    body = response.content if streamed_body is None else streamed_body
    headers = {name: value for name, value in response.items() if name.lower() != "content-length"}
    return Answer(response.status_code, headers, body)


def record(claimed: Claim, answer: Answer) -> None:
    """Keep the answer as the key's: a repeat of the request gets it."""
    from pxtserve.models import IdempotencyKey

    with db_connection():
        IdempotencyKey.objects.filter(pk=claimed.pk, token=claimed.token).update(
            status=IdempotencyKey.Status.DONE,
            finished_at=timezone.now(),
            response_status=answer.status,
            response_headers=answer.headers,
            response_body=answer.body,
        )


def release(claimed: Claim) -> None:
    """Give the key up (the request failed on the server's side): a retry runs again."""
    from pxtserve.models import IdempotencyKey

    with db_connection():
        IdempotencyKey.objects.filter(pk=claimed.pk, token=claimed.token).delete()


def _reusable(row: IdempotencyKey, now: datetime) -> bool:
    """Whether a key may be claimed anew: its answer expired, or its claim was abandoned."""
    if row.status == row.Status.DONE:
        return row.created_at < now - timedelta(seconds=conf.settings().IDEMPOTENCY_TTL)
    return _owner_gone(row.owner) or row.created_at < now - timedelta(seconds=_abandon_after())


def _abandon_after() -> float:
    timeout = conf.settings().REQUEST_TIMEOUT
    return (timeout if timeout is not None else _ABANDON_WITHOUT_TIMEOUT_S) + _ABANDON_MARGIN_S


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str) -> bool:
    """Whether the process of a claim is known dead: a pid of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _delete_expired() -> int:
    from pxtserve.models import IdempotencyKey

    now = timezone.now()
    ttl = conf.settings().IDEMPOTENCY_TTL
    answered = Q(status=IdempotencyKey.Status.DONE, created_at__lt=now - timedelta(seconds=ttl))
    abandoned = Q(created_at__lt=now - timedelta(seconds=max(ttl, _abandon_after())))
    deleted, _ = IdempotencyKey.objects.filter(answered | abandoned).delete()
    return deleted


def prune_keys() -> int:
    """Delete the keys whose answers expired (IDEMPOTENCY_TTL) and long-abandoned claims."""
    with db_connection():
        return _delete_expired()
