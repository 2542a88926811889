#!/usr/bin/env python
"""Django's command-line utility for the standalone pxtserve site."""

import os
import sys


def main() -> None:
    from pxtserve.startup import pause_for_serve

    # serve starts faster without the cyclic GC scanning what its imports create (pxtserve.startup)
    pause_for_serve(sys.argv[1:])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
