"""pxtserve's settings object: validated (unknown keys and wrong types name the key), None is a value,
and overrides take effect at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from pxtserve import conf
from pxtserve.errors import SettingsError

REPO = Path(__file__).resolve().parent.parent


def test_an_unknown_key_is_an_error_naming_it():
    with pytest.raises(SettingsError, match=r"settings.PXTSERVE\['MAX_UPLAD_SIZE'\]: unknown setting"):
        conf.parse({"MAX_UPLAD_SIZE": 10})


def test_a_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(SettingsError, match=r"settings.PXTSERVE\['MAX_UPLOAD_SIZE'\]: .*valid integer.*'big'"):
        conf.parse({"MAX_UPLOAD_SIZE": "big"})
    with pytest.raises(SettingsError, match=r"\['WRITE_BATCH_MAX'\]: .*greater than 0"):
        conf.parse({"WRITE_BATCH_MAX": 0})
    with pytest.raises(SettingsError, match="must be a dict"):
        conf.parse(["API_KEYS"])


def test_none_is_a_value():
    assert conf.parse({"REQUEST_TIMEOUT": None}).REQUEST_TIMEOUT is None
    assert conf.parse({}).REQUEST_TIMEOUT == 300
    # where None is no value the setting can take, it is an error rather than the default
    with pytest.raises(SettingsError, match="MAX_UPLOAD_SIZE"):
        conf.parse({"MAX_UPLOAD_SIZE": None})


def test_values_are_converted_once():
    settings = conf.parse({"CONFIG": "svc.toml", "SCHEMA_CHECK_INTERVAL": "2"})
    assert settings.CONFIG == Path("svc.toml") and settings.SCHEMA_CHECK_INTERVAL == 2.0


def test_overrides_take_effect_at_once_and_end_with_the_override():
    default = conf.settings().MAX_UPLOAD_SIZE
    with override_settings(PXTSERVE={"MAX_UPLOAD_SIZE": 5, "REQUEST_TIMEOUT": None}):
        assert conf.settings().MAX_UPLOAD_SIZE == 5
        assert conf.settings().REQUEST_TIMEOUT is None
    assert conf.settings().MAX_UPLOAD_SIZE == default


def test_a_bad_setting_stops_django_at_start(tmp_path):
    (tmp_path / "bad_settings.py").write_text('from tests.settings import *\nPXTSERVE = {"MAX_UPLAD_SIZE": 1}\n')
    result = subprocess.run(  # noqa: PLW1510 - the test asserts on returncode
        [sys.executable, str(REPO / "manage.py"), "check"],
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "DJANGO_SETTINGS_MODULE": "bad_settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "settings.PXTSERVE['MAX_UPLAD_SIZE']: unknown setting" in result.stderr


def test_the_standalone_site_reads_the_environment_variables():
    script = (
        "from pxtserve import conf; s = conf.settings(); print(s.MCP, s.IDEMPOTENCY_TTL, s.METRICS, s.MAX_PENDING_JOBS)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PXTSERVE_", "DJANGO_"))}
    env |= {
        "PXTSERVE_MCP": "1",
        "PXTSERVE_IDEMPOTENCY_TTL": "90.5",
        "PXTSERVE_METRICS": "0",
        "PXTSERVE_MAX_PENDING_JOBS": "7",
    }
    result = subprocess.run(  # noqa: PLW1510 - the test asserts on returncode
        [sys.executable, str(REPO / "manage.py"), "shell", "-c", script],
        env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "90.5", "False", "7"], result.stdout
