"""Sphinx configuration for the pyramid_redis_sessions documentation."""

from __future__ import annotations

project = "pyramid_redis_sessions"
author = "pyramid_redis_sessions contributors"
copyright = "pyramid_redis_sessions contributors"
release = "2.0.0.dev0"
version = "2.0"

root_doc = "index"
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
