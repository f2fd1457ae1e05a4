"""Another process reading sessions, for the local cache tests.

``python -m tests.cache_reader`` prints ``READY`` and then answers one JSON
line per JSON line read from stdin:

``{"op": "read", "url": …, "prefix": …, "cookie": "session=…"}``
  Reads the session that cookie names with this process's own factory on
  ``url`` and ``prefix`` (made on first use, kept): ``{"hit": …,
  "loaded_from": …, "new": …, "items": [[key, value], …], "id": …}``.
``{"op": "sync", "url": …, "prefix": …}``
  ``LocalCache.sync()`` of that factory's cache: ``{"synced": …}``.
``{"op": "stats", "url": …, "prefix": …}``
  ``LocalCache.stats()`` of that factory's cache.

It exits when its stdin closes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pyramid.request import Request

from tests.app import factory, finish

_factories: dict[tuple[str, str], Any] = {}


def _factory(command: dict[str, Any]) -> Any:
    key = (command["url"], command["prefix"])
    if key not in _factories:
        _factories[key] = factory(command["url"], command["prefix"])
    return _factories[key]


def answer(command: dict[str, Any]) -> dict[str, Any]:
    f = _factory(command)
    op = command["op"]
    if op == "read":
        request = Request.blank("/", headers={"Cookie": command["cookie"]})
        session = f(request)
        items = sorted([k, v] for k, v in session.items())
        found = {
            "hit": session.loaded_from == "local cache",
            "loaded_from": session.loaded_from,
            "new": session.new,
            "items": items,
            "id": session.session_id,
        }
        finish(session)
        return found
    if op == "sync":
        return {"synced": f.store.cache.sync()}
    if op == "stats":
        stats: dict[str, Any] = f.store.cache.stats()
        return stats
    raise ValueError(op)


def main() -> None:
    print("READY", flush=True)
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as e:  # reported to the test, which fails on it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
