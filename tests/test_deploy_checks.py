"""The loud warnings for a public-looking site on the local defaults (deploy checks), and DEBUG off by default."""

import os
import subprocess
import sys
from pathlib import Path

from django.core.checks import WARNING
from django.core.checks.registry import registry

from pxtserve.deploy_checks import check_any_host, check_debug, check_default_secret_key

REPO = Path(__file__).resolve().parent.parent
DEPLOY_CHECKS = (check_default_secret_key, check_debug, check_any_host)


def deployment_warnings() -> list[str]:
    issues = [issue for check in DEPLOY_CHECKS for issue in check(None)]
    assert all(issue.level == WARNING and issue.id.startswith("pxtserve.W") for issue in issues)
    return [issue.msg for issue in issues]


def test_they_run_under_check_deploy_only():
    assert all(check in registry.get_checks(include_deployment_checks=True) for check in DEPLOY_CHECKS)
    assert not any(check in registry.get_checks() for check in DEPLOY_CHECKS)
    assert all({"pxtserve", "security"} <= set(check.tags) for check in DEPLOY_CHECKS)


def test_local_hosts_need_no_warning(settings):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    settings.SECRET_KEY_IS_DEFAULT = True
    settings.DEBUG = True
    assert deployment_warnings() == []


def test_public_host_with_the_default_key_warns(settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    settings.SECRET_KEY_IS_DEFAULT = True
    settings.DEBUG = True
    warnings = deployment_warnings()
    assert any("DJANGO_SECRET_KEY" in w and "api.example.com" in w for w in warnings)
    assert any("DEBUG" in w for w in warnings)
    settings.SECRET_KEY_IS_DEFAULT = False
    settings.DEBUG = False
    assert deployment_warnings() == []


def test_any_host_warns(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.SECRET_KEY_IS_DEFAULT = False
    settings.DEBUG = False
    assert deployment_warnings() == ["ALLOWED_HOSTS is '*': any Host header is accepted"]


def test_the_standalone_site_defaults():
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='project.settings'; django.setup();"
        "from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY_IS_DEFAULT, sorted(s.ALLOWED_HOSTS))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0:2] == ["False", "True"]
    env["DJANGO_SECRET_KEY"] = "s3cret"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "False"
