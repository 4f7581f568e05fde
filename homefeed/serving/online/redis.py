"""``RedisOnlineStore``: the online store on Redis, shared by every feed server.

Keys (``P`` is ``key_prefix``)::

    P u:<user>:ids     set   applied event ids (dedup)      with P u:<user>:idq, a list in
    P u:<user>:idq     list  the same ids, oldest first       arrival order, to bound both
    P u:<user>:recent  list  "pin:action:time", newest first (LPUSH + LTRIM)
    P u:<user>:hidden  set   hidden pins
    P u:<user>:seen    zset  pin scored by the latest time seen
    P u:<user>:aff     hash  topic -> affinity decayed to the time in field "@t"
    P p:<pin>          hash  "<hour>:<column>" -> count; "@h" the latest hour

One Lua script applies one reaction (dedup check and every update, atomically); a batch is
one pipeline of script calls, so one round trip; another script applies a whole served page
(``record_served``) in one call. Every key expires ``ttl_s`` after its last
write. Not cluster-ready: a script touches a user's keys and a pin's key, in two hash slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from homefeed.models.data import Action
from homefeed.serving.online.base import (
    COUNTER_OF_ACTION,
    ENGAGEMENTS,
    HOUR_MS,
    OnlineStore,
    OnlineStoreError,
    Reaction,
    UserOnlineState,
    action_weight,
    check_ids,
    decay_factor,
    now_ms,
)
from homefeed.serving.settings import OnlineStoreConfig

try:
    import redis
except ImportError as e:  # pragma: no cover - redis is a dependency of the serving extra
    raise ImportError("the redis online store needs redis-py: pip install redis") from e

_USER_KEYS = ("ids", "idq", "recent", "hidden", "seen", "aff")

# KEYS: ids idq recent hidden seen aff pin
# ARGV: event_id pin action time recent_cap dedup_cap seen_cap ttl half_life_ms share
#       engaged(0/1) counter_column(-1: none) window_hours topics...
# Count one event in a pin's hourly counters, keeping ``window`` hours (the latest in "@h").
_COUNT_LUA = f"""
local function count(key, t, column, window, ttl)
  local hour = math.floor(t / {HOUR_MS})
  local latest = tonumber(redis.call('HGET', key, '@h')) or hour
  if hour > latest - window then
    redis.call('HINCRBY', key, string.format('%d:%d', hour, column), 1)
    if hour >= latest then
      redis.call('HSET', key, '@h', string.format('%d', hour))
      for _, name in ipairs(redis.call('HKEYS', key)) do
        local h = tonumber(string.match(name, '^(%d+):'))
        if h and h <= hour - window then redis.call('HDEL', key, name) end
      end
    end
    redis.call('EXPIRE', key, ttl)
  end
end
"""

_APPLY_LUA = f"""{_COUNT_LUA}
local eid, pin, action, ts = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = tonumber(ts)
local ttl = tonumber(ARGV[8])
if redis.call('SADD', KEYS[1], eid) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], eid)
if redis.call('LLEN', KEYS[2]) > tonumber(ARGV[6]) then
  redis.call('SREM', KEYS[1], redis.call('LPOP', KEYS[2]))
end
if ARGV[11] == '1' then
  redis.call('LPUSH', KEYS[3], pin .. ':' .. ARGV[3] .. ':' .. ts)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
end
if action == {int(Action.HIDE)} then redis.call('SADD', KEYS[4], pin) end
if action == {int(Action.IMPRESSION)} then
  redis.call('ZADD', KEYS[5], 'GT', ts, pin)
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[7]) + 1))
end
local share, half = tonumber(ARGV[10]), tonumber(ARGV[9])
if share ~= 0 and #ARGV > 13 then
  local tref = tonumber(redis.call('HGET', KEYS[6], '@t'))
  if not tref then
    tref = t
    redis.call('HSET', KEYS[6], '@t', ts)
  end
  if t > tref then
    local f = 2 ^ (-(t - tref) / half)
    local all = redis.call('HGETALL', KEYS[6])
    for i = 1, #all, 2 do
      if all[i] ~= '@t' then
        redis.call('HSET', KEYS[6], all[i], string.format('%.17g', tonumber(all[i + 1]) * f))
      end
    end
    redis.call('HSET', KEYS[6], '@t', ts)
    tref = t
  end
  local w = string.format('%.17g', share * 2 ^ (-(tref - t) / half))
  for i = 14, #ARGV do redis.call('HINCRBYFLOAT', KEYS[6], ARGV[i], w) end
end
local column = tonumber(ARGV[12])
if column >= 0 then count(KEYS[7], t, column, tonumber(ARGV[13]), ttl) end
for i = 1, 6 do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
"""

# KEYS: seen pin...   ARGV: time seen_cap ttl window_hours impression_column pin...
# One served page: each pin seen and its impression counted, without dedup ids.
_SERVED_LUA = f"""{_COUNT_LUA}
local ts = ARGV[1]
local t, ttl = tonumber(ts), tonumber(ARGV[3])
local window, column = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[1], 'GT', ts, ARGV[i + 4])
  count(KEYS[i], t, column, window, ttl)
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('EXPIRE', KEYS[1], ttl)
return #KEYS - 1
"""


class RedisOnlineStore(OnlineStore):
    name = "redis"

    def __init__(
        self, config: OnlineStoreConfig | None = None, client: redis.Redis | None = None
    ) -> None:
        self.config = config or OnlineStoreConfig(backend="redis")  # type: ignore[call-arg]
        self._half_life_ms = self.config.affinity_half_life_hours * HOUR_MS
        self._redis = client or redis.Redis.from_url(
            self.config.redis_url,
            decode_responses=True,
            socket_timeout=self.config.redis_timeout_s,
            socket_connect_timeout=self.config.redis_timeout_s,
        )
        self._apply_script = self._redis.register_script(_APPLY_LUA)
        self._served_script = self._redis.register_script(_SERVED_LUA)

    def _user_keys(self, user_id: int) -> list[str]:
        return [f"{self.config.key_prefix}u:{user_id}:{k}" for k in _USER_KEYS]

    def _pin_key(self, pin_id: int) -> str:
        return f"{self.config.key_prefix}p:{pin_id}"

    def apply(self, reactions: Sequence[Reaction]) -> int:
        if not reactions:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for r in reactions:
            keys = [*self._user_keys(r.user_id), self._pin_key(r.pin_id)]
            self._apply_script(keys=keys, args=self._script_args(r), client=pipe)
        return sum(int(x) for x in self._execute(pipe))

    def _script_args(self, r: Reaction) -> list[Any]:
        c = self.config
        weight = action_weight(r.action)
        share = weight / len(r.topics) if r.topics else 0.0
        column = COUNTER_OF_ACTION.get(r.action, -1)
        engaged = 1 if r.action in ENGAGEMENTS else 0
        head = [r.event_id, r.pin_id, int(r.action), r.time_ms, c.recent_capacity]
        head += [c.dedup_capacity, c.seen_capacity, c.ttl_s, repr(self._half_life_ms)]
        head += [repr(share), engaged, column, c.counter_window_hours]
        return head + list(r.topics)

    def user_state(
        self, user_ids: Sequence[int], now_ms: int | None = None
    ) -> list[UserOnlineState]:
        ids = check_ids("user_ids", user_ids)
        if not ids:
            return []
        now = _now(now_ms)
        # MULTI/EXEC: each user's keys read at one instant, all users in one round trip.
        pipe = self._redis.pipeline(transaction=True)
        for uid in ids:
            _, _, recent, hidden, seen, aff = self._user_keys(uid)
            pipe.lrange(recent, 0, -1)
            pipe.smembers(hidden)
            pipe.zrange(seen, 0, -1, withscores=True)
            pipe.hgetall(aff)
        replies = self._execute(pipe)
        return [self._state(uid, replies[4 * i : 4 * i + 4], now) for i, uid in enumerate(ids)]

    def _state(self, user_id: int, replies: list[Any], now: int) -> UserOnlineState:
        recent, hidden, seen, aff = replies
        rows = np.array([item.split(":") for item in recent], dtype=np.int64).reshape(-1, 3)
        affinity: dict[str, float] = {}
        if aff:
            factor = decay_factor(now - int(aff.pop("@t")), self._half_life_ms)
            affinity = {topic: float(v) * factor for topic, v in aff.items()}
        return UserOnlineState(
            user_id=user_id,
            recent_pins=rows[:, 0].copy(),
            recent_actions=rows[:, 1].astype(np.int8),
            recent_times=rows[:, 2].copy(),
            hidden=frozenset(int(p) for p in hidden),
            seen={int(p): int(t) for p, t in seen},
            topic_affinity=affinity,
        )

    def mark_seen(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        (uid,) = check_ids("user_id", [user_id])
        pins = check_ids("pin_ids", pin_ids)
        if not pins:
            return
        key = self._user_keys(uid)[4]
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(key, {str(p): int(time_ms) for p in pins}, gt=True)
        pipe.zremrangebyrank(key, 0, -(self.config.seen_capacity + 1))
        pipe.expire(key, self.config.ttl_s)
        self._execute(pipe)

    def record_served(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        (uid,) = check_ids("user_id", [user_id])
        pins = check_ids("pin_ids", pin_ids)
        if not pins:
            return
        c = self.config
        keys = [self._user_keys(uid)[4], *(self._pin_key(p) for p in pins)]
        args = [int(time_ms), c.seen_capacity, c.ttl_s, c.counter_window_hours]
        args += [COUNTER_OF_ACTION[Action.IMPRESSION], *pins]
        try:
            self._served_script(keys=keys, args=args)
        except redis.RedisError as e:
            raise OnlineStoreError(f"redis online store at {self.config.redis_url}: {e}") from e

    def pin_counters(self, pin_ids: Sequence[int], since_ms: int) -> np.ndarray:
        pins = check_ids("pin_ids", pin_ids)
        out = np.zeros((len(pins), 4), dtype=np.int64)
        if not pins:
            return out
        pipe = self._redis.pipeline(transaction=False)
        for pin in pins:
            pipe.hgetall(self._pin_key(pin))
        first = since_ms // HOUR_MS
        for i, fields in enumerate(self._execute(pipe)):
            for name, count in fields.items():
                hour, _, column = name.partition(":")
                if column and int(hour) >= first:
                    out[i, int(column)] += int(count)
        return out

    def _execute(self, pipe: Any) -> list[Any]:
        try:
            return list(pipe.execute())
        except redis.RedisError as e:
            raise OnlineStoreError(f"redis online store at {self.config.redis_url}: {e}") from e

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def close(self) -> None:
        self._redis.close()


def _now(value: int | None) -> int:
    return now_ms() if value is None else int(value)
