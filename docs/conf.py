"""Sphinx configuration for the pyramid_redis_sessions documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html``. The build never
goes online: there is no intersphinx, and ``linkcheck`` checks only the
links between these pages (external URLs are listed in ``linkcheck_ignore``).
"""

from __future__ import annotations

from importlib.metadata import version as _version

project = "pyramid_redis_sessions"
author = "pyramid_redis_sessions contributors"
copyright = "pyramid_redis_sessions contributors"
# One source of truth: the installed package's metadata (pyproject.toml).
release = _version("pyramid_redis_sessions")
version = ".".join(release.split(".")[:2])

root_doc = "index"
extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]

# The docstrings are written in Pyramid's style: each option a definition
# list entry ending in "Default: ...". Show type hints in the signature only.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = "pyramid_redis_sessions"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# The documentation of redis-py, Pyramid and Python is not linked with
# intersphinx, which would fetch inventories at every build. A reference to
# a name outside this package renders as code, without a link.
nitpicky = False

# Only the links between these pages are checked: the build machines have no
# general internet access, and an outside site being down is not our bug.
linkcheck_ignore = [r"https?://.*", r"mailto:.*"]
