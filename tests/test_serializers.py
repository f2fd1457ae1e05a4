"""Serializers: pickle (default), json, and 1.x's function pair."""

from __future__ import annotations

import json
import pickle

import pytest

from pyramid_redis_sessions.serializers import (
    FunctionSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    builtin_serializers,
)

ENVELOPE = {"managed_dict": {"a": [1, "b"]}, "created": 1.5, "timeout": None}


@pytest.mark.parametrize(
    "serializer",
    [
        PickleSerializer(),
        JSONSerializer(),
        FunctionSerializer(pickle.dumps, pickle.loads),
    ],
    ids=repr,
)
def test_round_trip_and_protocol(serializer: Serializer) -> None:
    assert isinstance(serializer, Serializer)
    data = serializer.dumps(ENVELOPE)
    assert isinstance(data, bytes) and serializer.loads(data) == ENVELOPE
    assert type(serializer).__name__ in repr(serializer)


def test_json_is_compact_and_rejects_bad_bytes() -> None:
    assert JSONSerializer().dumps({"a": 1}) == b'{"a":1}'
    with pytest.raises(ValueError):
        JSONSerializer().loads(b"\x80\x05")
    assert json.loads(JSONSerializer().dumps(ENVELOPE)) == ENVELOPE


def test_builtin_names() -> None:
    names = builtin_serializers()
    assert sorted(names) == ["json", "pickle"]
