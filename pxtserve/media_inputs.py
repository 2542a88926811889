"""Media values given as JSON strings: what a client may make the server read.

The reference ingests any path or URL a client names, so `"image": "/etc/passwd"`
reads a server file and then serves it back. Here a server-local path (or file://
URL) is accepted only inside a directory the operator listed, and an http(s) URL is
fetched only when a setting allows it, never from a loopback, private, link-local
or otherwise non-public address. The connection goes to the very address that was
checked (the host is resolved once, so a DNS answer that changes between the check and
the connect cannot send it elsewhere), and the fetched bytes go to Pixeltable's tmp
store so Pixeltable does not fetch (and resolve) the URL a second time.
"""

from __future__ import annotations

import mimetypes
import os
import socket
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pxtserve import conf
from pxtserve.addresses import default_port, pinned_request, public_addresses
from pxtserve.errors import ApiError
from pxtserve.pxt_internals import tmp_file_path

_CHUNK = 64 * 1024


def _refuse(field: str, why: str) -> ApiError:
    return ApiError(422, "MEDIA_INPUT_REFUSED", f"{field!r}: {why}; upload the file instead (multipart)")


def _allowed_dirs() -> list[Path]:
    return [Path(d).resolve() for d in conf.settings().MEDIA_INPUT_DIRS]


def _check_local(field: str, path: Path) -> str:
    resolved = path.resolve()
    if not any(resolved == d or d in resolved.parents for d in _allowed_dirs()):
        raise _refuse(field, "server-local paths are not accepted outside the directories listed in MEDIA_INPUT_DIRS")
    if not resolved.is_file():
        raise ApiError(422, "MEDIA_INPUT_NOT_FOUND", f"{field!r}: no such file")
    return str(resolved)


def _public_addresses(field: str, host: str, port: int) -> list[str]:
    try:
        addresses = public_addresses(host, port)
    except socket.gaierror as exc:
        raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: cannot resolve host {host!r}: {exc}") from exc
    if addresses is None:
        raise _refuse(field, f"host {host!r} resolves to a non-public address")
    return addresses


def _fetch(field: str, url: str) -> str:
    import httpx

    parsed = urllib.parse.urlsplit(url)
    address = _public_addresses(field, parsed.hostname or "", default_port(url))[0]
    limit = conf.settings().MAX_UPLOAD_SIZE
    ext = os.path.splitext(parsed.path)[1]
    dest = tmp_file_path(ext if ext[1:].isalnum() else "")
    try:
        # no redirects: a redirect could point at an internal address
        with (
            httpx.Client(follow_redirects=False, timeout=conf.settings().MEDIA_FETCH_TIMEOUT) as client,
            client.send(pinned_request(client, url, address), stream=True) as resp,
        ):
            if resp.status_code != 200:
                raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: fetching {url} answered {resp.status_code}")
            size = 0
            with open(dest, "wb") as out:
                for chunk in resp.iter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, "MEDIA_INPUT_TOO_LARGE", f"{field!r}: {url} is larger than {limit} bytes")
                    out.write(chunk)
        if not ext:
            guessed = mimetypes.guess_extension(resp.headers.get("content-type", "").split(";")[0].strip())
            if guessed:
                dest = dest.rename(dest.with_suffix(guessed))
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise ApiError(422, "MEDIA_INPUT_UNREACHABLE", f"{field!r}: cannot fetch {url}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return str(dest)


def check_media_value(field: str, value: Any) -> Any:
    """The value to give Pixeltable for a media input sent as a JSON string, or an ApiError."""
    if value is None or not isinstance(value, str):
        return value
    parsed = urllib.parse.urlsplit(value)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not conf.settings().MEDIA_FETCH_URLS:
            raise _refuse(field, "fetching media from URLs is disabled (setting MEDIA_FETCH_URLS)")
        return _fetch(field, value)
    if scheme == "file":
        return _check_local(field, Path(urllib.parse.unquote(parsed.path)))
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return _check_local(field, Path(value))
    raise _refuse(field, f"unsupported URL scheme {scheme!r}")


def check_media_inputs(inputs: dict[str, Any], media_fields: Iterable[str]) -> dict[str, Any]:
    for name in media_fields:
        if name in inputs:
            inputs[name] = check_media_value(name, inputs[name])
    return inputs
