"""`pxtserve`, the console script: Django's manage.py for the standalone site the package carries.

`pxtserve serve NAME --config service.toml` is `python manage.py serve NAME --config service.toml`
in a checkout, and every other Django command passes through the same way (`pxtserve migrate`,
`pxtserve createsuperuser`, `pxtserve qcluster`, `pxtserve help`).
"""

from __future__ import annotations

import os
import sys

from pxtserve.startup import pause_for_serve

SETTINGS_MODULE = "pxtserve.site.settings"


def main(argv: list[str] | None = None, prog: str = "pxtserve") -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        # Django's own --version would print Django's version under pxtserve's name
        print(_version())
        return
    # serve starts faster without the cyclic GC scanning what its imports create (pxtserve.startup)
    pause_for_serve(args)
    # a settings module the caller chose (their own site, or project.settings in a checkout) wins
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    # A console script's sys.path[0] is its bin/ directory, not the current one, so the service file's
    # `modules` and `query` functions beside it would not import; `python -m` and manage.py find them
    # there, and so does the job workers' child (`python -m pxtserve.workers`, run in this directory).
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    from django.core.management import execute_from_command_line

    from pxtserve.errors import SettingsError

    try:
        # argv[0] is only Django's program name, in its help and error messages
        execute_from_command_line([prog, *args])
    except SettingsError as exc:  # a bad settings.PXTSERVE (or PXTSERVE_* variable): one line, no traceback
        sys.exit(f"{prog}: error: {exc}")


def _version() -> str:
    from importlib.metadata import version

    import pxtserve

    return f"pxtserve {pxtserve.__version__} (Django {version('django')})"
