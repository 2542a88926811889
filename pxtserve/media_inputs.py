"""Media values given as JSON strings: what a client may make the server read.

The reference ingests any path or URL a client names, so `"image": "/etc/passwd"`
reads a server file and then serves it back. Here a server-local path (or file://
URL) is accepted only inside a directory the operator listed, and an http(s) URL is
fetched only when a setting allows it, never from a loopback, private, link-local
or otherwise non-public address. The connection goes to the very address that was
checked (the host is resolved once, so a DNS answer that changes between the check and
the connect cannot send it elsewhere), a redirect's target is checked the same way before it
is followed, and the fetched bytes go to Pixeltable's tmp
store so Pixeltable does not fetch (and resolve) the URL a second time.
"""

from __future__ import annotations

import mimetypes
import os
import socket
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pxtserve import conf
from pxtserve.addresses import default_port, is_loopback, is_public, pinned_request, resolve
from pxtserve.errors import ApiError
from pxtserve.pxt_internals import tmp_file_path

_CHUNK = 64 * 1024


_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def _refuse(field: str, why: str, upload_fields: Sequence[str] = ()) -> ApiError:
    # an upload is suggested only where the route takes one
    hint = f"; this route takes files as multipart uploads ({', '.join(upload_fields)})" if upload_fields else ""
    return ApiError(422, "MEDIA_INPUT_REFUSED", f"{field!r}: {why}{hint}")


def _allowed_dirs() -> list[Path]:
    return [Path(d).resolve() for d in conf.settings().MEDIA_INPUT_DIRS]


def _check_local(field: str, path: Path, upload_fields: Sequence[str]) -> str:
    resolved = path.resolve()
    if not any(resolved == d or d in resolved.parents for d in _allowed_dirs()):
        why = "server-local paths are not accepted outside the directories listed in MEDIA_INPUT_DIRS"
        raise _refuse(field, why, upload_fields)
    if not resolved.is_file():
        raise ApiError(422, "MEDIA_INPUT_NOT_FOUND", f"{field!r}: no such file")
    return str(resolved)


def _fetch_address(field: str, url: str, upload_fields: Sequence[str]) -> str:
    """The checked address to connect to for `url`: public, or loopback when MEDIA_FETCH_ALLOW_LOOPBACK."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https"):
        raise _refuse(field, f"unsupported URL scheme {parsed.scheme!r}", upload_fields)
    host = parsed.hostname or ""
    try:
        addresses = resolve(host, default_port(url))
    except socket.gaierror as exc:
        raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: cannot resolve host {host!r}: {exc}") from exc
    loopback_allowed = conf.settings().MEDIA_FETCH_ALLOW_LOOPBACK
    if not addresses or not all(is_public(a) or (loopback_allowed and is_loopback(a)) for a in addresses):
        raise _refuse(field, f"host {host!r} resolves to a non-public address", upload_fields)
    return addresses[0]


def _fetch(field: str, url: str, upload_fields: Sequence[str]) -> str:
    import httpx

    current = conf.settings()
    limit = current.MAX_UPLOAD_SIZE
    # httpx's timeout bounds each read; this bounds the whole fetch, a server trickling bytes included
    deadline = time.monotonic() + current.MEDIA_FETCH_TIMEOUT
    ext = os.path.splitext(urllib.parse.urlsplit(url).path)[1]
    dest = tmp_file_path(ext if ext[1:].isalnum() else "")
    try:
        with httpx.Client(follow_redirects=False, timeout=current.MEDIA_FETCH_TIMEOUT) as client:
            # redirects are followed here, each hop's host resolved and checked like the first one's
            target = url
            for _ in range(_MAX_REDIRECTS + 1):
                address = _fetch_address(field, target, upload_fields)
                resp = client.send(pinned_request(client, target, address), stream=True)
                if resp.status_code not in _REDIRECTS or "location" not in resp.headers:
                    break
                resp.close()
                target = urllib.parse.urljoin(target, resp.headers["location"])
            else:
                raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: {url} redirects too many times")
            try:
                content_type = _save(field, url, resp, dest, limit, deadline)
            finally:
                resp.close()
        if not ext:
            guessed = mimetypes.guess_extension(content_type)
            if guessed:
                dest = dest.rename(dest.with_suffix(guessed))
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: cannot fetch {url}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return str(dest)


def _save(field: str, url: str, resp: Any, dest: Path, limit: int, deadline: float) -> str:
    """Write a fetched response's body to `dest`, within `limit` bytes and by `deadline`; its content type."""
    if resp.status_code != 200:
        raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: fetching {url} answered {resp.status_code}")
    too_large = ApiError(413, "MEDIA_INPUT_TOO_LARGE", f"{field!r}: {url} is larger than {limit} bytes")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    size = 0
    with open(dest, "wb") as out:
        for chunk in resp.iter_bytes(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large
            if time.monotonic() > deadline:
                why = f"{url} did not arrive within {conf.settings().MEDIA_FETCH_TIMEOUT} s"
                raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: {why}")
            out.write(chunk)
    return str(resp.headers.get("content-type", "")).split(";")[0].strip()


def check_media_value(field: str, value: Any, upload_fields: Sequence[str] = ()) -> Any:
    """The value to give Pixeltable for a media input sent as a JSON string, or an ApiError.

    `upload_fields`: the route's file upload fields, which a refusal suggests (none: it suggests no upload)."""
    if value is None or not isinstance(value, str):
        return value
    parsed = urllib.parse.urlsplit(value)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not conf.settings().MEDIA_FETCH_URLS:
            raise _refuse(field, "fetching media from URLs is disabled (setting MEDIA_FETCH_URLS)", upload_fields)
        return _fetch(field, value, upload_fields)
    if scheme == "file":
        return _check_local(field, Path(urllib.parse.unquote(parsed.path)), upload_fields)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return _check_local(field, Path(value), upload_fields)
    raise _refuse(field, f"unsupported URL scheme {scheme!r}", upload_fields)


def check_media_inputs(
    inputs: dict[str, Any], media_fields: Iterable[str], upload_fields: Sequence[str] = ()
) -> dict[str, Any]:
    for name in media_fields:
        if name in inputs:
            inputs[name] = check_media_value(name, inputs[name], upload_fields)
    return inputs
