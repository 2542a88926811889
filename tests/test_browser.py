"""The pages in a real browser: Swagger UI at /docs and the admin's job pages, in headless Chromium.

A real `manage.py serve` (DEBUG off, static files through WhiteNoise) runs as a subprocess
on a free port with its own Django database; Selenium drives Debian's chromium through
Debian's chromedriver (no Selenium Manager, no downloads). Screenshots go to
test-artifacts/ at the top of the repository.

Without chromium, chromedriver or selenium the module is skipped, except under CI=true,
where that is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.processes import free_port, serve_env, wait_until_up

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by the `browser_available` fixture below
    webdriver = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo" / "service.toml"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 120
PAGE_TIMEOUT_S = 30

ADMIN_USER = "browser-admin"
ADMIN_PASSWORD = "browser-test-pw-7d1f"

# the demo's notes table, inserted in the background (the demo itself has no background route)
JOBS_SERVICE = """
[[service]]
name = "browser-jobs"
title = "pxtserve browser jobs"
modules = ["examples.demo.schema"]

[[service.routes]]
type = "insert"
table = "demo.notes"
path = "/notes/background"
background = true
"""


def _missing() -> list[str]:
    missing = []
    if webdriver is None:
        missing.append("the selenium package (pip install -r requirements-test.txt)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not (CHROMEDRIVER.is_file() and os.access(CHROMEDRIVER, os.X_OK)):
        missing.append(f"{CHROMEDRIVER} (apt-get install chromium-driver)")
    return missing


@pytest.fixture(scope="module", autouse=True)
def browser_available() -> None:
    missing = _missing()
    if missing:
        reason = "browser tests need " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing browser is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)


class Server:
    """One `manage.py serve` in a subprocess, with its own Django database, its output in a file."""

    def __init__(self, tmp_path: Path, target: str, config: Path, *args: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"serve-{target}-{self.port}.log"
        self.env = serve_env(tmp_path, PXTSERVE_VAR_DIR=str(tmp_path / "var"), PXTSERVE_JOB_WORKERS="1")
        self.env.pop("DJANGO_DEBUG", None)  # DEBUG off, as deployed: static files must come from WhiteNoise
        command = [sys.executable, "manage.py", "serve", target, "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.descendants: list[psutil.Process] = []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_until_up(f"{self.origin}/healthz", self.process, START_TIMEOUT_S, self.log)
        self.refresh()

    def refresh(self) -> None:
        try:
            found = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        known = {p.pid for p in self.descendants}
        self.descendants += [p for p in found if p.pid not in known]

    def manage(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Another manage.py command on the same Django database."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop(self) -> None:
        """SIGTERM the server, then SIGKILL whatever it started that is still there."""
        self.refresh()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        _, alive = psutil.wait_procs(self.descendants, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)


@pytest.fixture
def server(pxt_tables: Any, tmp_path: Path) -> Iterator[Any]:
    """server(target, config, *args) -> a started Server; every one is stopped afterwards."""
    started: list[Server] = []

    def _start(target: str, config: Path, *args: str) -> Server:
        srv = Server(tmp_path, target, config, *args)
        started.append(srv)
        srv.wait_ready()
        return srv

    try:
        yield _start
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture(scope="module")
def browser(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1366,1200",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(PAGE_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, condition: Any, what: str, timeout: float = PAGE_TIMEOUT_S) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what} on {driver.current_url}\n"
            + driver.find_element(By.TAG_NAME, "body").text[:2000]
        ) from None


def screenshot(driver: Any, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    assert path.stat().st_size > 1000
    with capsys.disabled():
        print(f"\n[screenshot] {path}")
    return path


def severe_console_messages(driver: Any) -> list[str]:
    """Errors the page logged; the site has no favicon, and the browser asks for one on its own."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "/favicon.ico " not in entry["message"]
    ]


def test_docs_render_the_demo_routes_from_local_static_files(server, browser, capsys):
    srv = server("demo", DEMO, "--no-workers")
    browser.get_log("browser")  # drop whatever an earlier page left
    browser.get(f"{srv.origin}/docs")

    # the operations, rendered by Swagger UI's JavaScript (not in the served HTML)
    def rendered_paths(driver: Any) -> set[str] | bool:
        paths = {el.get_attribute("data-path") for el in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        return paths if {"/notes", "/notes/lookup", "/notes/update", "/images/thumbnail"} <= paths else False

    paths = wait(browser, rendered_paths, "Swagger UI to render the demo's operations")
    demo_paths = {
        "/notes", "/notes/update", "/notes/delete", "/notes/delete-by-tag", "/notes/lookup", "/notes/search",
        "/images", "/images/update", "/images/delete", "/images/search", "/images/thumbnail",
    }  # fmt: skip
    assert demo_paths <= paths, sorted(demo_paths - paths)
    assert wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ".info .title")), "the API title")
    assert "pxtserve demo" in browser.find_element(By.CSS_SELECTOR, ".info .title").text

    # Swagger UI's scripts and styles are this server's static files, and nothing came from elsewhere
    referenced = browser.execute_script(
        "return [...document.querySelectorAll('script[src]')].map(e => e.src)"
        ".concat([...document.querySelectorAll('link[href]')].map(e => e.href))"
    )
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(urlsplit(u).path.endswith("swagger-ui-bundle.js") for u in referenced), referenced
    assert any(urlsplit(u).path.startswith("/static/") and u.endswith(".css") for u in referenced), referenced
    foreign = [u for u in referenced + loaded if not u.startswith(srv.origin + "/")]
    assert foreign == [], f"resources from other origins: {foreign}"
    for url in referenced:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200, (url, r.status_code)
    assert severe_console_messages(browser) == []

    # the demo's operations expand like a user would expect: one click shows the parameters
    browser.find_element(By.CSS_SELECTOR, '.opblock-summary-path[data-path="/notes/lookup"]').click()
    wait(
        browser,
        lambda d: any(
            el.text.strip().startswith("id") for el in d.find_elements(By.CSS_SELECTOR, ".parameters-col_name")
        ),
        "the lookup operation's `id` parameter",
    )
    screenshot(browser, "docs.png", capsys)


def test_admin_login_shows_a_finished_job(server, browser, tmp_path, new_id, capsys):
    config = tmp_path / "browser-jobs.toml"
    config.write_text(JOBS_SERVICE)
    srv = server("browser-jobs", config)  # with its job workers

    created = srv.manage(
        "createsuperuser",
        "--noinput",
        "--skip-checks",
        env={
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "browser-admin@example.com",
        },
    )
    assert created.returncode == 0, created.stdout + created.stderr

    # a background insert, run by the worker cluster
    key = new_id()
    r = httpx.post(
        f"{srv.origin}/notes/background",
        json={"id": key, "title": "from a job", "body": "seen in the admin"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    job_id, job_url = r.json()["id"], r.json()["job_url"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := httpx.get(job_url, timeout=30).json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, f"job {job_id} still pending\n" + srv.log()
        time.sleep(0.3)
    assert status["status"] == "done", status
    assert status["result"]["title_upper"] == "FROM A JOB"

    # log in through the form
    browser.get(f"{srv.origin}/admin/login/")
    wait(browser, EC.presence_of_element_located((By.ID, "id_username")), "the login form")
    # the admin's own stylesheets, through WhiteNoise with DEBUG off
    sheets = browser.execute_script("return [...document.styleSheets].map(s => s.href).filter(Boolean)")
    assert any(urlsplit(u).path.startswith("/static/admin/css/") for u in sheets), sheets
    for url in sheets:
        assert url.startswith(srv.origin + "/") and httpx.get(url, timeout=10).status_code == 200, url
    browser.find_element(By.ID, "id_username").send_keys(ADMIN_USER)
    browser.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait(browser, EC.presence_of_element_located((By.ID, "user-tools")), "the logged-in admin")
    assert ADMIN_USER.upper() in browser.find_element(By.ID, "user-tools").text.upper()

    # the job list: the job's id and its status
    browser.get(f"{srv.origin}/admin/pxtserve/job/")
    row = wait(
        browser,
        EC.presence_of_element_located(
            (By.XPATH, f"//table[@id='result_list']//tr[.//a[normalize-space()='{job_id}']]")
        ),
        f"job {job_id} in the changelist",
    )
    assert row.find_element(By.CSS_SELECTOR, ".field-status").text.strip().lower() == "done"
    assert row.find_element(By.CSS_SELECTOR, ".field-route").text.strip().endswith("POST /notes/background")
    screenshot(browser, "admin-job-list.png", capsys)

    # its page: the result the worker stored
    row.find_element(By.LINK_TEXT, job_id).click()
    result = wait(
        browser, EC.presence_of_element_located((By.CSS_SELECTOR, ".field-result_display pre")), "the job's result"
    )
    assert urlsplit(browser.current_url).path == f"/admin/pxtserve/job/{job_id}/change/"
    for expected in (str(key), '"title_upper": "FROM A JOB"', '"body_length": 17'):
        assert expected in result.text, result.text
    assert browser.find_element(By.CSS_SELECTOR, ".field-status .readonly").text.strip().lower() == "done"
    screenshot(browser, "admin-job-detail.png", capsys)
    assert severe_console_messages(browser) == []
