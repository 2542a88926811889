"""A pip-installed pxtserve serves on its own: the wheel carries the standalone site, and its `pxtserve`
console script serves a service from an empty directory with nothing of this checkout on sys.path.

The wheel is built from a copy of the checkout by pip, as a user's `pip install` builds it (in an isolated
build environment: pyproject's build-system requirements are the real ones), and installed with --no-deps
into a venv of its own. Its dependencies (Pixeltable and the rest, minutes to download) come from the venv
running the tests, through a .pth file: the venv's own site-packages, which holds the wheel's pxtserve, comes
first on sys.path, and the test venv has no pxtserve of its own (asserted), so pxtserve, its package data,
its entry point and its settings can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import free_port, stop_embedded_postgres, wait_until_up

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
# the checkout's own state and caches: not sources of the package (and big, or changing under other runs)
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".schemathesis", "test-artifacts", "results", "pxtserve-data",
)  # fmt: skip

SERVICE = """
[[service]]
name = "pipdemo"
modules = ["pipschema"]

[[service.routes]]
type = "insert"
table = "pipdemo.notes"
path = "/notes"

[[service.routes]]
type = "insert"
table = "pipdemo.notes"
path = "/notes-later"
background = true

[[service.routes]]
type = "query"
path = "/notes/lookup"
query = "pipschema.note_by_id"
one_row = true
method = "get"
"""

# Imported by every process that builds the service (serve itself, the job workers): it records where that
# process found pxtserve and its settings, and what its sys.path holds.
SCHEMA = """
import importlib.util
import json
import os
import sys

import pixeltable as pxt
from django.conf import settings

import pxtserve

pxt.create_dir("pipdemo", if_exists="ignore")
notes = pxt.create_table(
    "pipdemo.notes", {"id": pxt.Required[pxt.Int], "title": pxt.String}, primary_key="id", if_exists="ignore"
)
notes.add_computed_column(title_upper=notes.title.upper(), if_exists="ignore")


@pxt.query
def note_by_id(id: int):
    return notes.where(notes.id == id).select(notes.id, notes.title, notes.title_upper)


probe = {
    "pid": os.getpid(),
    "pxtserve": pxtserve.__file__,
    "settings_module": settings.SETTINGS_MODULE,
    "settings_file": sys.modules[settings.SETTINGS_MODULE].__file__,
    "sys_path": sys.path,
    "project_importable": importlib.util.find_spec("project") is not None,
}
with open(os.path.join(os.environ["PIP_TEST_PROBES"], f"probe-{os.getpid()}.json"), "w") as f:
    json.dump(probe, f)
"""


def _venv_site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pxtserve's wheel, built by pip from a copy of the checkout (an in-tree build would write build/ and
    *.egg-info into the checkout, under other test runs' feet)."""
    root = tmp_path_factory.mktemp("pxtserve-wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    result = subprocess.run(  # noqa: PLW1510 - asserted below
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (root / "dist").glob("pxtserve-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding only the wheel's pxtserve, its dependencies borrowed from the test venv."""
    deps = Path(sysconfig.get_paths()["purelib"])
    # were pxtserve installed in the test venv, the .pth below would offer it to the new venv too
    assert not list(deps.glob("pxtserve*")), f"the test venv has a pxtserve of its own: {list(deps.glob('pxtserve*'))}"
    venv = tmp_path_factory.mktemp("pxtserve-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_packages = _venv_site_packages(venv)
    # a path line is appended to sys.path after the venv's own site-packages (pip, too, comes from there)
    (site_packages / "pxtserve_test_dependencies.pth").write_text(f"{deps}\n")
    result = subprocess.run(  # noqa: PLW1510 - asserted below
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_the_wheel_carries_the_site_the_script_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        [dist_info] = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        metadata = z.read(f"{dist_info}/METADATA").decode()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    for name in ("site/__init__.py", "site/settings.py", "site/urls.py", "site/asgi.py", "cli.py", "__main__.py"):
        assert f"pxtserve/{name}" in names
    assert "pxtserve/py.typed" in names and "pxtserve/migrations/0001_initial.py" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    # only the package: not the checkout's project/, tests, examples or benchmark
    assert {n.split("/")[0] for n in names} == {"pxtserve", dist_info}
    assert "pxtserve = pxtserve.cli:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: mysql" in metadata and "Provides-Extra: redis" in metadata
    assert re.search(r"^Requires-Dist: pymysql>=1\.1; extra == \"mysql\"$", metadata, re.MULTILINE), metadata
    assert re.search(r"^Requires-Dist: pixeltable==0\.7\.21$", metadata, re.MULTILINE), metadata


def test_requirements_txt_is_the_dependencies_and_the_extras_the_tests_use():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # every extra but the test tools' (requirements-test.txt has those)
    declared = [*project["dependencies"], *(dep for name, deps in extras.items() if name != "test" for dep in deps)]
    lines = (REPO / "requirements.txt").read_text().splitlines()
    required = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert sorted(required) == sorted(declared)


def _clean_env(pixeltable_home: Path, probes: Path) -> dict[str, str]:
    """This environment without anything that points at the checkout or chooses settings or data locations."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PXTSERVE_", "PIXELTABLE_", "DJANGO_", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    return {**env, "PIXELTABLE_HOME": str(pixeltable_home), "PIP_TEST_PROBES": str(probes)}


@pytest.fixture
def pixeltable_home(tmp_path: Path) -> Iterator[Path]:
    """A throwaway Pixeltable home; its embedded PostgreSQL (which outlives the processes that use it) is
    stopped at the end."""
    home = tmp_path / "pixeltable"
    yield home
    stop_embedded_postgres(home / "pgdata")


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=45)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_installed_console_script_serves_from_an_empty_directory(venv, tmp_path, pixeltable_home):
    site = tmp_path / "site"
    site.mkdir()
    (site / "service.toml").write_text(SERVICE)
    (site / "pipschema.py").write_text(SCHEMA)
    probes = tmp_path / "probes"
    probes.mkdir()
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [str(venv / "bin" / "pxtserve"), "serve", "pipdemo", "--config", "service.toml"]
    # the job cluster (not the default, threads of serve itself): its child process must find the wheel's
    # pxtserve and the service's modules from the empty directory too
    command += ["--host", "127.0.0.1", "--port", str(port), "--job-runner", "cluster"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=site,
            env=_clean_env(pixeltable_home, probes),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        wait_until_up(f"{base}/healthz", process, START_TIMEOUT_S, output)
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post("/notes", json={"id": 1, "title": "hello"})
            assert r.status_code == 200, r.text
            assert r.json() == {"id": 1, "title": "hello", "title_upper": "HELLO"}
            r = client.get("/notes/lookup", params={"id": 1})
            assert r.status_code == 200, r.text
            assert r.json()["title_upper"] == "HELLO"

            # Swagger UI and its scripts, from ninja's static files through WhiteNoise (DEBUG is off)
            docs = client.get("/docs")
            assert docs.status_code == 200, docs.text
            scripts = re.findall(r'src="([^"]+\.js)"', docs.text)
            assert any(s.endswith("swagger-ui-bundle.js") for s in scripts), docs.text
            for script in scripts:
                r = client.get(script)
                assert r.status_code == 200, (script, r.status_code)
                assert "javascript" in r.headers["content-type"] and len(r.content) > 1000, script

            # a background route: the job cluster's worker runs it
            r = client.post("/notes-later", json={"id": 2, "title": "later"})
            assert r.status_code == 202, r.text
            job_url = r.json()["job_url"]
            deadline = time.monotonic() + 60
            while (status := client.get(job_url).json())["status"] in ("pending", "running"):
                assert time.monotonic() < deadline, f"job still {status['status']}\n{output()}"
                time.sleep(0.3)
            assert status["status"] == "done", status
            assert status["result"] == {"id": 2, "title": "later", "title_upper": "LATER"}
        children = [
            c for c in psutil.Process(process.pid).children(recursive=True) if not c.name().startswith("postgres")
        ]
    finally:
        code = _stop(process)
    # uvicorn re-raises the SIGTERM after its graceful shutdown; serve exits with 128 + SIGTERM
    assert code == 128 + signal.SIGTERM, output()
    # the job workers went with it
    _, alive = psutil.wait_procs(children, timeout=20)
    assert alive == [], [c.cmdline() for c in alive]

    # the default data directory, in the directory serve ran in, as serve said
    data = site / "pxtserve-data"
    assert f"Data directory: {data} (Django's database and static files; PXTSERVE_VAR_DIR moves it)" in output()
    assert (data / "django.sqlite3").is_file() and (data / "static").is_dir()
    # and nothing else was written beside the service file (bytecode aside)
    assert {p.name for p in site.iterdir()} - {"__pycache__"} == {"pipschema.py", "pxtserve-data", "service.toml"}

    # every process that built the service (serve, and the job workers) had pxtserve and its settings from the
    # wheel, and nothing of the checkout
    found = [json.loads(p.read_text()) for p in probes.glob("probe-*.json")]
    assert {p["pid"] for p in found} > {process.pid}, found  # serve and at least one worker
    site_packages = str(_venv_site_packages(venv))
    # the dependencies' directory is the test venv's, which may lie inside the checkout (.venv/)
    deps = Path(sysconfig.get_paths()["purelib"]).resolve()
    for probe in found:
        assert probe["pxtserve"] == f"{site_packages}/pxtserve/__init__.py", probe
        assert probe["settings_module"] == "pxtserve.site.settings"
        assert probe["settings_file"] == f"{site_packages}/pxtserve/site/settings.py", probe
        assert not probe["project_importable"], probe
        checkout = [p for p in probe["sys_path"] if p and Path(p).resolve().is_relative_to(REPO)]
        assert [Path(p).resolve() for p in checkout] == [deps], probe


def test_python_m_pxtserve_and_version(venv, tmp_path):
    env = _clean_env(tmp_path / "pixeltable-home", tmp_path)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run(  # noqa: PLW1510 - asserted below
        [str(venv / "bin" / "pxtserve"), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith(f"pxtserve {version} (Django "), result
    # Django's commands pass through, under pxtserve's name
    result = subprocess.run(  # noqa: PLW1510 - asserted below
        [str(venv / "bin" / "python"), "-m", "pxtserve", "help", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m pxtserve serve" in result.stdout and "--no-workers" in result.stdout
