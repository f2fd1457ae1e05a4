"""``pyramid_redis_sessions.lazy``: an attribute made on first read."""

from __future__ import annotations

import pytest

from pyramid_redis_sessions.lazy import lazy


class Counted:
    made = 0

    @lazy
    def part(self) -> list[int]:
        """A part."""
        Counted.made += 1
        return [Counted.made]


@pytest.fixture(autouse=True)
def _reset() -> None:
    Counted.made = 0


def test_made_on_first_read_then_an_ordinary_attribute() -> None:
    one = Counted()
    assert "part" not in vars(one)
    assert Counted.made == 0
    assert one.part == [1]
    assert vars(one)["part"] is one.part
    assert one.part == [1]
    assert Counted.made == 1


def test_each_instance_makes_its_own() -> None:
    one, two = Counted(), Counted()
    assert one.part == [1]
    assert two.part == [2]
    assert one.part is not two.part


def test_assigned_it_is_what_was_assigned_and_deleted_it_is_made_again() -> None:
    one = Counted()
    one.part = [7]
    assert one.part == [7]
    assert Counted.made == 0
    del one.part
    assert one.part == [1]


def test_on_the_class_it_is_the_descriptor_with_the_methods_doc() -> None:
    assert isinstance(Counted.part, lazy)
    assert Counted.part.__doc__ == "A part."
