"""Media in a real browser (headless Chromium, as tests/test_browser.py drives it) against a real server:
an MP4 and a WAV made by an upload route play in `<video>`/`<audio>` and seek to the middle (Range requests
answered 206), and a PNG carrying a `<script>` stored under a `.html` name never runs that script."""

from __future__ import annotations

import http.server
import io
import re
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import PIL.Image
import PIL.PngImagePlugin
import pytest

from tests import test_browser as chromium
from tests.media_server import started, store_file
from tests.processes import free_port
from tests.test_browser import wait

# test_browser's fixtures: the module-scoped Chromium, and the skip (or CI failure) without one
browser = chromium.browser
browser_available = chromium.browser_available

SERVICE = """
[[service]]
name = "browser-media"
[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/clips"
uploadfile_inputs = ["video", "audio"]
outputs = ["id", "video", "audio"]
"""

DURATION_S = 20


@pytest.fixture(scope="module")
def server(pxt_tables: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with started(tmp_path_factory, SERVICE) as srv:
        yield srv


def _mp4(path: Path) -> bytes:
    """H.264 in MP4, a keyframe a second, noise frames (so that the file is a few MB and seeking fetches ranges)."""
    import av

    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "10", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for _ in range(DURATION_S * 10):
            pixels = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        tone = (np.sin(np.arange(8000 * DURATION_S) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2")
        w.writeframes(tone.tobytes())
    return buf.getvalue()


@pytest.fixture
def clip_urls(server: Any, new_id: Any, tmp_path: Path) -> dict[str, str]:
    video = _mp4(tmp_path / "clip.mp4")
    r = httpx.post(
        f"{server.origin}/clips",
        data={"id": str(new_id())},
        files={"video": ("clip.mp4", video, "video/mp4"), "audio": ("tone.wav", _wav(), "audio/wav")},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return {"video": r.json()["video"], "audio": r.json()["audio"]}


# plays the element, seeks to the middle once it can, and reports what happened in window.mediaReport
_PLAY_AND_SEEK = """
const [tag, src, middle] = arguments;
document.body.innerHTML = '';
const el = document.createElement(tag);
el.muted = true;
el.preload = 'auto';
window.mediaReport = {events: [], error: null, seeked: false, timeAfterSeek: null, seekable: null};
el.addEventListener('error', () => { window.mediaReport.error = el.error && el.error.code; });
el.addEventListener('loadedmetadata', () => {
  window.mediaReport.duration = el.duration;
  window.mediaReport.seekable = el.seekable.length ? [el.seekable.start(0), el.seekable.end(0)] : null;
  el.currentTime = middle;
});
el.addEventListener('seeked', () => {
  window.mediaReport.seeked = true;
  window.mediaReport.timeAfterSeek = el.currentTime;
});
// play() needs a user's gesture for audio: the test clicks this button
const button = document.createElement('button');
button.id = 'play';
button.textContent = 'play';
button.addEventListener('click', () => el.play().catch(e => { window.mediaReport.error = String(e); }));
document.body.appendChild(button);
el.addEventListener('timeupdate', () => { window.mediaReport.currentTime = el.currentTime; });
el.src = src;
document.body.appendChild(el);
"""


def _report(driver: Any) -> dict[str, Any]:
    return driver.execute_script("return window.mediaReport")


def _media_requests(server: Any, url: str) -> list[str]:
    """The statuses of the server's access lines for the file's path."""
    path = re.escape(url.split("/media/", 1)[1].partition("?")[0])
    return re.findall(rf'"GET /media/{path}[^"]*" (\d{{3}})', server.log())


@pytest.mark.parametrize("tag", ["video", "audio"])
def test_media_plays_and_seeks_to_the_middle(server, browser, clip_urls, tag):
    url = clip_urls[tag]
    middle = DURATION_S / 2
    browser.get(f"{server.origin}/healthz")  # a page on the server's origin to put the element in
    browser.execute_script(_PLAY_AND_SEEK, tag, url, middle)
    wait(browser, lambda d: (_report(d) or {}).get("seeked") or (_report(d) or {}).get("error"), f"the {tag} to seek")
    report = _report(browser)
    assert report["error"] is None, report
    assert abs(report["duration"] - DURATION_S) < 1, report
    assert report["seekable"] is not None and report["seekable"][1] >= middle, report  # a server that takes ranges
    assert abs(report["timeAfterSeek"] - middle) < 1.5, report
    # and it plays on from there
    browser.find_element(chromium.By.ID, "play").click()
    wait(browser, lambda d: _report(d).get("currentTime", 0) > report["timeAfterSeek"] + 0.2, f"the {tag} to play on")
    statuses = _media_requests(server, url)
    assert statuses and set(statuses) <= {"200", "206"} and "206" in statuses, statuses
    # the bytes of a range from the middle are the file's
    whole = httpx.get(url, timeout=60).content
    start = len(whole) // 2
    part = httpx.get(url, headers={"Range": f"bytes={start}-{start + 9999}"}, timeout=60)
    assert part.status_code == 206 and part.content == whole[start : start + 10000]


class _Beacon:
    """A loopback HTTP server: GET /page answers the payload as text/html (the control), GET /hit records a hit."""

    def __init__(self, payload: bytes) -> None:
        self.hits: list[str] = []
        beacon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/hit"):
                    beacon.hits.append(self.path)
                body = payload if self.path == "/page" else b""
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if self.path == "/page" else "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _png_with_script(beacon_port: int) -> bytes:
    script = (
        f"<script>document.title='pwned';new Image().src='http://127.0.0.1:{beacon_port}/hit?'+location.origin;"
        "</script>"
    )
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("Comment", script)
    buf = io.BytesIO()
    PIL.Image.new("RGB", (4, 4), "red").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_a_png_with_a_script_stored_as_html_does_not_run(server, browser):
    beacon = _Beacon(b"")
    try:
        payload = _png_with_script(beacon.port)
        control = _Beacon(payload)
        try:
            # the control: the same bytes served as text/html do run (so the payload is a real one)
            browser.get(f"http://127.0.0.1:{control.port}/page")
            wait(browser, lambda d: d.title == "pwned" and beacon.hits, "the control page's script to run")
        finally:
            control.close()
        beacon.hits.clear()
        path, rel = store_file(".html", payload)
        url = f"{server.origin}/media/{rel}"
        r = httpx.get(url, timeout=30)
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-disposition"].startswith("attachment")
        assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
        # straight to it: a download (denied here), never a page of the server's origin
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "deny"})
        browser.get(f"{server.origin}/healthz")
        browser.get(url)
        # the navigation never made a document of it: the page is still the one before, its title untouched
        assert browser.current_url == f"{server.origin}/healthz"
        assert browser.title != "pwned"
        assert beacon.hits == [], beacon.hits
        path.unlink()
    finally:
        beacon.close()
