"""The Lua scripts the store runs, each on the keys it is given, and the
facts of the stored record they need (field names, where a sealed value's
payload starts, the bounds of its numbers), taken from
:mod:`pyramid_redis_sessions.values` so that the two cannot drift apart.
:mod:`pyramid_redis_sessions.store` sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import Script

from .values import CREATED, HEADER_SIZE, MAX_CREATED_SIZE, MAX_SECONDS, TIMEOUT

__all__ = [
    "END",
    "GONE",
    "INDEX",
    "LOAD",
    "MOVE",
    "MOVED",
    "SCRIPTS",
    "TAKEN",
    "WRITE",
    "IndexUpdate",
]


def _lua_string(value: bytes) -> bytes:
    """``value`` as a Lua string literal: printable ASCII as it is, any
    other byte (and quotes, backslashes) as a three-digit escape."""
    return (
        b"'"
        + b"".join(
            bytes([byte])
            if 0x20 <= byte < 0x7F and byte not in b"'\\"
            else b"\\%03d" % byte
            for byte in value
        )
        + b"'"
    )


# KEYS[1]: the session. ARGV: default timeout ('' for none), absolute
# timeout ('' for none), the time now. Reads the hash, finds the session's
# own timeout and creation time among its fields, slides the expiry from
# them (a session past its deadline is deleted), then returns the flat
# field/value list packed with the server's cmsgpack into one string (''
# for no session): one bulk reply is parsed far faster than a hundred,
# whichever parser redis-py has. Two commands whatever the session holds:
# each redis.call costs the server about as much as a small command itself.
# A hash without a creation time is not ours: returned untouched, for the
# application to reject.
#
# Nothing here can check a MAC, so the stored numbers are not trusted: the
# script uses them only in the exact forms the application writes (those of
# values.parse_created and values.parse_timeout), bounded so that every TTL
# it derives is a whole number of at most values.MAX_SECONDS, which Lua
# prints as digits and EXPIRE takes. Any other form leaves the expiry
# alone, and the application, which checks every field's MAC and form,
# rejects the session (and deletes the key). Reserved values are the
# version byte, the tag, then ASCII: their number starts at byte
# values.HEADER_SIZE + 1 (Lua counts from 1).
LOAD = Script(
    None,  # type: ignore[arg-type]  # a bytes script needs no client's encoder
    b"""
local fields = redis.call('HGETALL', KEYS[1])
local created, own
for i = 1, #fields, 2 do
  local name = fields[i]
  if name == %(created)s then
    created = fields[i + 1]
  elseif name == %(timeout)s then
    own = fields[i + 1]
  end
end
if not created then
  -- A write all the same (a no-op here), so that a read-only replica, met
  -- during a failover, answers READONLY instead of "no session", which
  -- would end the user's session.
  redis.call('PERSIST', KEYS[1])
  if #fields == 0 then return '' end
  return cmsgpack.pack(fields)
end
created = string.sub(created, %(number_at)d)
if #created > %(created_size)d or not string.find(created, '^%%d+%%.%%d+$') then
  return cmsgpack.pack(fields)
end
local ttl = tonumber(ARGV[1])
if own then
  own = string.sub(own, %(number_at)d)
  if #own > %(seconds_size)d or not (own == '0' or string.find(own, '^[1-9]%%d*$'))
      or tonumber(own) > %(max_seconds)d then
    return cmsgpack.pack(fields)
  end
  ttl = tonumber(own)
end
if ttl == 0 then ttl = nil end
local absolute = tonumber(ARGV[2])
if absolute then
  local left = math.ceil(tonumber(created) + absolute - tonumber(ARGV[3]))
  if left <= 0 then
    redis.call('DEL', KEYS[1])
    return ''
  end
  -- A creation time ahead of this clock (another server's) never pushes
  -- the deadline further than a whole absolute timeout from now.
  if left > absolute then left = absolute end
  if not ttl or left < ttl then ttl = left end
end
if ttl then
  redis.call('EXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return cmsgpack.pack(fields)
"""
    % {
        b"created_size": MAX_CREATED_SIZE,
        b"seconds_size": len(str(MAX_SECONDS)),
        b"max_seconds": MAX_SECONDS,
        b"created": _lua_string(CREATED),
        b"timeout": _lua_string(TIMEOUT),
        b"number_at": HEADER_SIZE + 1,
    },
)

# KEYS[1]: the session. ARGV: 'create' (refuse an existing key) or 'update'
# (refuse a missing one), the TTL ('' for none), the number N of fields
# set, N field/value pairs, then the fields to delete. Returns 1 if applied,
# 0 if refused (and then nothing changed).
WRITE = Script(
    None,  # type: ignore[arg-type]
    b"""
local update = ARGV[1] == 'update'
local expired = false
if update and ARGV[2] ~= '' then
  -- The common save: EXPIRE is the existence check too (0: no such key).
  if redis.call('EXPIRE', KEYS[1], ARGV[2]) == 0 then return 0 end
  expired = true
elseif (redis.call('EXISTS', KEYS[1]) == 1) ~= update then
  return 0
end
local last = 3 + 2 * tonumber(ARGV[3])
for i = 4, last, 400 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 399, last)))
end
for i = last + 1, #ARGV, 400 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
if expired then return 1 end
if ARGV[2] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
elseif update then
  redis.call('PERSIST', KEYS[1])
end
return 1
""",
)

# KEYS[1]: a user's index, a sorted set of session ids scored by expiry.
# ARGV: the time now; '1' when the scores are deadlines that no session can
# outlive (absolute_timeout), '' when they are only the expiry last known
# (an active session slides past it); the number N of members to remove,
# those N members, then score/member pairs to add or raise (ZADD GT: a
# score only ever grows, so it never falls below a session's expiry that
# another request knew). Then prunes: with deadlines, every entry past its
# score; else it returns those entries, for the caller to check each
# session's real TTL (a score passed says nothing about a session that was
# used since). Finally the key expires with its last deadline, or (scores
# not being deadlines) persists; an emptied sorted set is deleted by Redis.
_INDEX_FUNCTION = b"""
local function update_index(key, argv)
  local now = tonumber(argv[1])
  local n = tonumber(argv[3])
  if n > 0 then redis.call('ZREM', key, unpack(argv, 4, 3 + n)) end
  for i = 4 + n, #argv, 2 do
    redis.call('ZADD', key, 'GT', argv[i], argv[i + 1])
  end
  local suspects = {}
  if argv[2] == '1' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  else
    suspects = redis.call('ZRANGEBYSCORE', key, '-inf', now)
  end
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 then return suspects end
  local deadline = tonumber(last[2])
  if argv[2] == '1' and deadline < math.huge then
    redis.call('EXPIREAT', key, math.ceil(deadline) + 1)
  else
    redis.call('PERSIST', key)
  end
  return suspects
end
"""

INDEX = Script(
    None,  # type: ignore[arg-type]
    _INDEX_FUNCTION + b"return update_index(KEYS[1], ARGV)\n",
)

# KEYS[1]: the session moved away from (a hash, or a legacy package's
# string), KEYS[2]: the new session, KEYS[3...]: user indexes. ARGV: the
# TTL ('' for none), the number N of fields, N field/value pairs (the first
# is the creation time, sealed for the new id), then for each index the
# number M of its arguments and those M (INDEX's ARGV). The claim, then the
# commit, in one atomic step: nothing is written unless the old session
# still exists and the new id is free; then the indexes are updated, the
# new session created and the old one deleted. Returns {1, the suspects of
# each index} when moved, {0} when the new id is taken, {-1} when the old
# session is gone (nothing changed either way). A retry of a move whose
# reply was lost finds its own new key (that creation field, sealed for
# that id, is written by nobody else) and answers 1 again.
MOVE = Script(
    None,  # type: ignore[arg-type]
    _INDEX_FUNCTION
    + b"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[4] then return {1} end
  return {-1}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
-- The indexes first: a script is not rolled back, and an index that fails
-- (a key of another type) must fail before the sessions are touched.
local last = 2 + 2 * tonumber(ARGV[2])
local reply = {1}
local at = last + 1
for k = 3, #KEYS do
  local m = tonumber(ARGV[at])
  reply[#reply + 1] = update_index(KEYS[k], {unpack(ARGV, at + 1, at + m)})
  at = at + 1 + m
end
for i = 3, last, 400 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 399, last)))
end
if ARGV[1] ~= '' then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
redis.call('DEL', KEYS[1])
return reply
""",
)

# KEYS[1]: a session. ARGV: a field, then the values it may hold. Deletes
# the session if the field holds one of them (its signed user, under the
# secret or a fallback): 1 if deleted, else 0.
END = Script(
    None,  # type: ignore[arg-type]
    b"""
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
for i = 2, #ARGV do
  if value == ARGV[i] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
""",
)


@dataclass
class IndexUpdate:
    """Changes to one user's index, run by :meth:`.store.RedisStore.update_index`
    or along with a save."""

    #: The index's key (``users.index_key``).
    key: str
    #: Session ids to remove.
    remove: list[str] = field(default_factory=list)
    #: ``(session_id, score)`` to add, or whose score to raise.
    add: list[tuple[str, float]] = field(default_factory=list)
    #: True when the scores are deadlines (see ``INDEX``).
    deadlines: bool = False
    #: Filled in by the store: the entries whose score has passed, when
    #: the scores are not deadlines; their sessions need a look.
    suspects: list[str] = field(default_factory=list)

    def args(self, now: float) -> list[Any]:
        flat = [x for member, score in self.add for x in (repr(score), member)]
        return [
            repr(now),
            "1" if self.deadlines else "",
            len(self.remove),
            *self.remove,
            *flat,
        ]


#: The ``MOVE`` script's answers, and so
#: :meth:`~pyramid_redis_sessions.store.RedisStore.move`'s.
MOVED, TAKEN, GONE = 1, 0, -1

#: Every script the store runs (tests preload them for exact counts).
SCRIPTS = (LOAD, WRITE, INDEX, END, MOVE)
