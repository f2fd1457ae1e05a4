"""The Lua scripts take the stored record's facts from ``values``."""

from __future__ import annotations

import pytest

from pyramid_redis_sessions.scripts import LOAD, _lua_string
from pyramid_redis_sessions.values import CREATED, HEADER_SIZE, TIMEOUT
from tests.servers import BaseServer


@pytest.mark.parametrize(
    "value", [CREATED, TIMEOUT, b"", b"it's", b"back\\slash", bytes(range(256))]
)
def test_a_lua_string_literal_is_the_bytes_it_was_made_from(
    server: BaseServer, value: bytes
) -> None:
    assert server.client().eval(b"return " + _lua_string(value), 0) == value


def test_the_load_script_names_the_reserved_fields_and_offset_of_values() -> None:
    script = LOAD.script
    assert isinstance(script, bytes)
    assert b"name == " + _lua_string(CREATED) in script
    assert b"name == " + _lua_string(TIMEOUT) in script
    at = b"%d)" % (HEADER_SIZE + 1)
    assert script.count(b"string.sub(created, " + at) == 1
    assert script.count(b"string.sub(own, " + at) == 1
