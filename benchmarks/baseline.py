"""``--baseline REV``: this package as it was at a git revision, as a library.

The revision's ``pyramid_redis_sessions`` is exported with ``git archive``
and imported as ``prs_baseline`` (its imports are relative), so it runs in
the same process as the working tree's, batches interleaved: ``ours/base``
is then the paired ratio of a change against where it started.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = "prs_baseline"


def import_revision(revision: str, where: Path) -> ModuleType:
    """The package at ``revision``, imported as ``prs_baseline``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "pyramid_redis_sessions"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    package = where / "pyramid_redis_sessions"
    spec = importlib.util.spec_from_file_location(
        MODULE, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def against(revision: str) -> Iterator[tuple[ModuleType, Any]]:
    """``(package at revision, server)`` for the scripts that compare the
    working tree with one revision: the package as :func:`import_revision`
    gives it, and a server of their own on a free loopback port
    (``redis-server``, else Valkey), stopped on exit."""
    sys.path.insert(0, str(ROOT))  # tests.servers, when run as a script
    from tests.servers import ServerProcess, find_backends

    backend, binary = sorted(find_backends().items())[0]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = import_revision(revision, Path(tmp) / "src")
        (Path(tmp) / "server").mkdir()
        server = ServerProcess(backend, binary, Path(tmp) / "server")
        server.start()
        try:
            yield baseline, server
        finally:
            server.close()
