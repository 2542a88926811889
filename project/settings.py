"""Settings of the standalone site run from this checkout (`manage.py serve`): the packaged site's.

They live in pxtserve/site/settings.py so that the wheel carries them; this module stays for the
checkout's commands, the tests (DJANGO_SETTINGS_MODULE=project.settings, tests/settings.py) and
sites that extend it. Imported from a checkout, their data directory is its var/ (PXTSERVE_VAR_DIR
moves it).
"""

from pathlib import Path

from pxtserve.site.settings import *

# the checkout's root, as this module always defined it
BASE_DIR = Path(__file__).resolve().parent.parent
