"""The body of a Django test client's response, streamed ones included (media and file responses iterate
asynchronously, which `b"".join(response.streaming_content)` cannot read)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync


async def _collect(parts: Any) -> bytes:
    return b"".join([part async for part in parts])


def response_body(response: Any) -> bytes:
    if not response.streaming:
        return response.content
    if response.is_async:
        return async_to_sync(_collect)(response.streaming_content)
    return b"".join(response.streaming_content)
