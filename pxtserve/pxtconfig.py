"""Starting Pixeltable next to a pyproject.toml that declares services.

Pixeltable 0.7.21 reads the nearest pyproject.toml's [tool.pixeltable] table as
its own settings and rejects keys it does not know, `service` included, so a
service declared the way the spec recommends would stop Pixeltable from
starting. When that is the case we start Pixeltable's config without the
project file (its home config and environment still apply) and say so.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pxtserve.pxt_internals import init_config_without_project_file

_logger = logging.getLogger("pxtserve")


def _project_pyproject(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "pixeltable.toml").is_file():
            return None  # Pixeltable prefers it, and it holds no services
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                tool = tomllib.loads(candidate.read_text()).get("tool", {})
            except (OSError, tomllib.TOMLDecodeError):
                return None
            if isinstance(tool, dict) and "pixeltable" in tool:
                return candidate
    return None


def init_pixeltable_config() -> None:
    """Initialize Pixeltable's config before first use, skipping a project file it would reject."""
    pyproject = _project_pyproject(Path.cwd())
    if pyproject is None:
        return
    section = tomllib.loads(pyproject.read_text())["tool"]["pixeltable"]
    if not isinstance(section, dict) or "service" not in section:
        return
    if not init_config_without_project_file():
        return  # already initialized: nothing left to choose
    other = sorted(k for k in section if k != "service")
    if other:
        _logger.warning(
            "%s: Pixeltable settings in [tool.pixeltable] (%s) are not applied, because Pixeltable 0.7.21 "
            "rejects the [[tool.pixeltable.service]] tables in the same file",
            pyproject,
            ", ".join(other),
        )
