#!/usr/bin/env python
"""Django's command-line utility for the standalone pxtserve site."""

import os
import sys


def main() -> None:
    # this checkout's site; otherwise the same as the `pxtserve` console script
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from pxtserve.cli import main as run

    run(sys.argv[1:], prog=os.path.basename(sys.argv[0]))


if __name__ == "__main__":
    main()
