"""``lazy``: an attribute made on first use, then an ordinary attribute.

What :class:`functools.cached_property` does, without the lock it takes on
Python 3.11 for every first use (one lock per property, shared by every
instance and thread; Python 3.12 dropped it). A session makes its parts
this way, so that a request that never needs one (a bot's read of an empty
session) does not pay for it: see :class:`.session.RedisSession`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

__all__ = ["lazy"]

T = TypeVar("T")


class lazy(Generic[T]):
    """Decorate a method without arguments: its result becomes the
    instance's attribute of that name the first time it is read, and is
    made again only if that attribute is deleted. Without a lock, two
    threads reading it first at the same moment would each make one: it is
    for objects that one thread uses at a time, as a request's session."""

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> lazy[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object, owner: type | None = None) -> T | lazy[T]:
        if instance is None:
            return self
        value = self._make(instance)
        # Not a data descriptor: from now on the instance's own attribute
        # is found first, and this is not called again.
        instance.__dict__[self._name] = value
        return value
