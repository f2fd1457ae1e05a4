"""The envelope inside a stored value is 1.x's, so 1.x data reads as is.

Uses the values 1.0.1 really wrote (``shared/fixtures``, copied into
``tests/fixtures``): a 1.x payload sealed with our header loads with its
data, flash queues and CSRF token intact.
"""

from __future__ import annotations

import base64
import datetime
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions.values import ValueCodec
from tests.app import SECRET, factory
from tests.servers import BaseServer

FIXTURE = Path(__file__).parent / "fixtures" / "pyramid_redis_sessions-1.0.1.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]


def one_x_payload(case: dict[str, Any]) -> bytes:
    return base64.b64decode(case["redis_value_b64"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_our_envelope_has_one_x_shape(
    server: BaseServer, prefix: str, case: dict[str, Any]
) -> None:
    f = factory(server.url, prefix)
    session = f(Request.blank("/"))
    session["user_id"] = 42
    session._request._process_response_callbacks(Response())
    value = server.client().get(prefix + session.session_id)
    assert value is not None
    ours = pickle.loads(f.values.open(session.session_id, value)[0])
    theirs = pickle.loads(one_x_payload(case))  # a trusted fixture file
    assert set(ours) == set(theirs) == {"managed_dict", "created", "timeout"}
    for field in ours:
        assert type(ours[field]) is type(theirs[field]), field


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_one_x_data_sealed_by_us_loads_with_flash_and_csrf(
    server: BaseServer, prefix: str, case: dict[str, Any]
) -> None:
    f = factory(server.url, prefix, timeout=None)
    writer = f(Request.blank("/"))
    session_id = writer.session_id
    value = ValueCodec(SECRET).seal(session_id, one_x_payload(case))
    server.client().set(prefix + session_id, value)
    cookie = f.cookie.sign(session_id)
    session = f(Request.blank("/", headers={"Cookie": f"session={cookie}"}))
    # The fixture records reprs; rebuild the values (a set's repr order
    # depends on the hash seed, so compare values, not strings).
    expected = {
        key: eval(text, {"datetime": datetime})  # trusted fixture text
        for key, text in case["session_data_repr"].items()
    }
    assert {key: session[key] for key in expected} == expected
    assert session.get_csrf_token() == case["csrf_token"]
    assert session.peek_flash("w") == case["flash"]["w"]
    assert session.pop_flash() == case["flash"][""]
    assert session.timeout == case["redis_ttl"]
