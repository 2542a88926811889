"""pxtserve's system checks: each fires for its condition and not otherwise, `serve` runs the ones it can,
and `manage.py check` / `check --deploy` report them from a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.checks import ERROR, WARNING, CheckMessage, run_checks
from django.core.management import CommandError, call_command
from django.test import override_settings

from pxtserve.checks import SERVICE_FILE_ERROR, serve_issues
from pxtserve.config import load_service
from pxtserve.errors import ServiceConfigError

REPO = Path(__file__).resolve().parent.parent
BROKEN = '[[service]]\nname = "x"\nbogus = 1\n'
# loads (the loader checks declarations only), but could never be built: no such module, no such table
UNBUILDABLE = (
    '[[service]]\nname = "later"\nmodules = ["no_such_module_anywhere"]\n'
    '[[service.routes]]\ntype = "insert"\ntable = "no_such_dir.no_such_table"\npath = "/x"\n'
)


def issues(check_id: str) -> list[CheckMessage]:
    return [issue for issue in run_checks(tags=["pxtserve"]) if issue.id == check_id]


# W006 also reads the routers built so far in the process: other tests' webhook routes, not this site's
SIGNED = {"WEBHOOK_SECRET": "checks-test-secret"}


def test_the_test_site_has_no_issues():
    with override_settings(PXTSERVE={**settings.PXTSERVE, **SIGNED}):
        assert run_checks(tags=["pxtserve"]) == []


@pytest.mark.parametrize(("app", "check_id"), [("ninja", "pxtserve.E001"), ("django_q", "pxtserve.E002")])
def test_a_missing_app_is_an_error_with_a_hint(app, check_id):
    assert issues(check_id) == []
    with override_settings(INSTALLED_APPS=[a for a in settings.INSTALLED_APPS if a != app]):
        [issue] = issues(check_id)
    assert issue.level == ERROR and f"{app!r} is not in INSTALLED_APPS" in issue.msg
    assert issue.hint == f'add "{app}" to INSTALLED_APPS'


def test_a_bad_setting_is_an_error_naming_the_key():
    with override_settings(PXTSERVE={"MAX_UPLAD_SIZE": 1}):
        found = run_checks(tags=["pxtserve"])
    # the checks that read the settings stand aside: one error, from the settings check
    assert [issue.id for issue in found] == ["pxtserve.E003"]
    assert found[0].level == ERROR and "settings.PXTSERVE['MAX_UPLAD_SIZE']: unknown setting" in found[0].msg


def test_a_service_file_that_does_not_load_is_an_error_with_the_loaders_message(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN)
    with pytest.raises(ServiceConfigError) as raised:
        load_service(bad)
    with override_settings(PXTSERVE={"CONFIG": str(bad)}):
        [issue] = issues(SERVICE_FILE_ERROR)
    assert (
        issue.level == ERROR and issue.msg == str(raised.value) == f"{bad}: service 'x': field 'bogus': unknown field"
    )
    with override_settings(PXTSERVE={"CONFIG": str(tmp_path / "missing.toml")}):
        assert issues(SERVICE_FILE_ERROR)[0].msg == f"{tmp_path / 'missing.toml'}: no such file"
    with override_settings(PXTSERVE={"CONFIG": str(tmp_path)}):
        assert issues(SERVICE_FILE_ERROR)[0].msg.startswith(f"{tmp_path}: cannot be read")
    good = tmp_path / "good.toml"
    good.write_text(UNBUILDABLE)
    with override_settings(PXTSERVE={"CONFIG": str(good), "SERVICE": "other"}):
        assert "no service named 'other'" in issues(SERVICE_FILE_ERROR)[0].msg
    # only loaded, never built: the module that does not exist is not imported, the table not looked up
    with override_settings(PXTSERVE={"CONFIG": str(good), "SERVICE": "later"}):
        assert issues(SERVICE_FILE_ERROR) == []


def test_missing_media_input_dirs_warn(tmp_path):
    missing = tmp_path / "missing"
    with override_settings(PXTSERVE={"MEDIA_INPUT_DIRS": [str(tmp_path), str(missing)]}):
        [issue] = issues("pxtserve.W001")
    assert issue.level == WARNING and repr(str(missing)) in issue.msg and "not an existing directory" in issue.msg


def test_an_unwritable_job_upload_dir_warns(tmp_path):
    # created on the first upload, parents included: a directory still to be made is fine
    with override_settings(PXTSERVE={"JOB_UPLOAD_DIR": str(tmp_path / "new" / "uploads")}):
        assert issues("pxtserve.W002") == []
    # under a file, no directory can be made (root, who may write anywhere, included)
    (tmp_path / "a-file").write_text("")
    with override_settings(PXTSERVE={"JOB_UPLOAD_DIR": str(tmp_path / "a-file" / "uploads")}):
        [issue] = issues("pxtserve.W002")
    assert issue.level == WARNING and "JOB_UPLOAD_DIR" in issue.msg and "not a writable directory" in issue.msg


def test_serve_runs_the_deploy_checks_but_not_the_service_file_check(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN)
    # serve serves the service its command line names, so settings' CONFIG is nothing to it
    site = {"ALLOWED_HOSTS": ["*"], "SECRET_KEY_IS_DEFAULT": False, "DEBUG": False}
    with override_settings(PXTSERVE={"CONFIG": str(bad), **SIGNED}, **site):
        assert SERVICE_FILE_ERROR in {issue.id for issue in run_checks(tags=["pxtserve"])}
        assert [issue.id for issue in serve_issues()] == ["pxtserve.W005"]
        with override_settings(SILENCED_SYSTEM_CHECKS=["pxtserve.W005"]):
            assert serve_issues() == []


def test_serve_prints_the_warnings_and_stops_on_an_error_before_building_anything():
    stderr = io.StringIO()
    site = {"ALLOWED_HOSTS": ["example.com"], "SECRET_KEY_IS_DEFAULT": True, "DEBUG": False}
    with override_settings(PXTSERVE={"MAX_UPLAD_SIZE": 1}, **site), pytest.raises(CommandError) as raised:
        call_command("serve", "no-such-service", "--config", "no-such-file.toml", "--dry-run", stderr=stderr)
    # the checks' error, not the missing file's: serve stopped before it read the service
    assert "settings.PXTSERVE['MAX_UPLAD_SIZE']: unknown setting" in str(raised.value)
    assert "[pxtserve.E003]" in str(raised.value)
    assert (
        "WARNING: ALLOWED_HOSTS names example.com but SECRET_KEY is the built-in development key: "
        "set DJANGO_SECRET_KEY (sessions and admin logins can be forged with the default)" in stderr.getvalue()
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a real process, on the standalone site's settings and only the environment given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PXTSERVE_"))}
    return subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_prints_the_pxtserve_warnings():
    result = manage("check", "--deploy", DJANGO_ALLOWED_HOSTS="example.com")
    assert result.returncode == 0, result.stderr
    assert (
        "(pxtserve.W003) ALLOWED_HOSTS names example.com but SECRET_KEY is the built-in development key: "
        "set DJANGO_SECRET_KEY" in result.stderr
    )
    assert "pxtserve.W004" not in result.stderr and "pxtserve.W005" not in result.stderr


def test_check_fails_on_a_broken_service_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN)
    message = f"{bad}: service 'x': field 'bogus': unknown field"
    # Django's URL check imports pxtserve.urls too, which must not end the command in a traceback
    for args in (["check"], ["check", "--tag", "pxtserve"]):
        result = manage(*args, PXTSERVE_CONFIG=str(bad))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert f"(pxtserve.E004) {message}" in result.stderr


def test_a_service_that_does_not_build_is_a_check_error_and_a_503_not_a_broken_urlconf(tmp_path):
    unbuildable = tmp_path / "later.toml"
    unbuildable.write_text(UNBUILDABLE)
    result = manage("check", PXTSERVE_CONFIG=str(unbuildable))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "(pxtserve.E005)" in result.stderr and "no_such_module_anywhere" in result.stderr, result.stderr
    # the site's URLconf still loads: its own pages answer, the service's paths say it is unavailable
    script = (
        "import django, json; django.setup(); from django.test import Client; c = Client(); "
        "r = c.get('/x'); print(json.dumps([c.get('/healthz').status_code, r.status_code, r.json()]))"
    )
    result = manage("shell", "-c", script, PXTSERVE_CONFIG=str(unbuildable))
    assert result.returncode == 0, result.stderr
    healthz, status, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert (healthz, status, body["detail"]["error_code"]) == (200, 503, "SERVICE_UNAVAILABLE"), body
    assert "no_such_module_anywhere" not in json.dumps(body)  # the reason is the operator's: in the log
    assert "no_such_module_anywhere" in result.stderr
