"""The demo's multimodal path as README shows it: its `curl -F` commands, run against a real demo server.

The commands are read from README.md's block (the one after the marker comment), so README stays true: each is
run with curl as written, with the port changed, and every media URL it answers is fetched and checked.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port, serve_env, stop_process, wait_until_up

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo" / "service.toml"
MARKER = "<!-- test_demo.py runs the commands of this block against a real demo server -->"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("curl ")]


@pytest.fixture(scope="module")
def demo(pxt_tables: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pixeltable as pxt

    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "demo", "--config", str(DEMO),
             "--host", "127.0.0.1", "--port", str(port), "--no-workers"],
            cwd=REPO, env=serve_env(tmp), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, output=lambda: log_path.read_text(errors="replace"))
        yield f"localhost:{port}"
    finally:
        stop_process(proc, timeout=30)
        # the demo's tables are shared with the session's other tests: remove the rows the README made
        for table in ("demo.images", "demo.videos"):
            t = pxt.get_table(table)
            t.delete(where=t.id == 1)


def run_curl(command: str, host: str) -> Any:
    args = shlex.split(command.replace("localhost:8000", host))
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def fetch(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response


def test_readme_multimodal_commands_answer_media_urls(demo: str) -> None:
    commands = readme_commands()
    assert [re.search(r"localhost:8000/(\S+)", c).group(1) for c in commands] == [  # type: ignore[union-attr]
        "images/upload",
        "videos",
        "videos/frames?id=1'",
    ]
    image = run_curl(commands[0], demo)
    assert image["width"] == 320 and image["tag"] == "demo"
    assert fetch(image["image"]).content == (REPO / "examples/demo/media/photo.png").read_bytes()
    thumbnail = fetch(image["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg"

    video = run_curl(commands[1], demo)
    assert video["duration"] == pytest.approx(3.0) and video["title"] == "clip"
    clip = fetch(video["video"])
    assert clip.headers["content-type"] == "video/mp4"
    assert clip.content == (REPO / "examples/demo/media/clip.mp4").read_bytes()
    assert fetch(video["poster"]).headers["content-type"] == "image/jpeg"

    frames = run_curl(commands[2], demo)["rows"]
    assert [row["pos"] for row in frames] == [0, 1, 2]  # one per second of the 3-second clip
    for row in frames:
        assert fetch(row["frame"]).content[:3] == b"\xff\xd8\xff"  # a JPEG
