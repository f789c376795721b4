"""The Lua script that fires one period of a periodic schedule (``yadtq.schedule_store``).

Its own module because ``yadtq.lua`` is near the size limit; it reuses that module's prelude, so
the task record it writes is exactly the one ``CREATE`` writes.
"""

from yadtq.lua import _PRELUDE

FIRE_CREATED = 1
"""The period's task was created: send it to Kafka."""
FIRE_DONE_BEFORE = 0
"""The period (or a later one) was fired already: nothing to do."""
FIRE_FIRST_SEEN = 2
"""No marker yet (a new schedule): the marker now says this period; it does not run (the first
run is the next period)."""
FIRE_MARKER_REPAIRED = 3
"""The marker was malformed (not a number, or in the future): replaced by this period, which
does not run (never a second run of a period)."""
FIRE_EXISTS = 4
"""The marker was behind but the period's task exists (marker lost): the marker moves on; the
task is left to the reconciler if it was never sent."""
FIRE_FUTURE = -1
"""Refused: the period starts after Redis's clock (a bug or a scheduler with a bad clock)."""

# KEYS[1] = counts, KEYS[2..#KEYS-3] = state sets (the prelude's), then: KEYS[#KEYS-2] = the
# markers hash (``schedules:last``), KEYS[#KEYS-1] = the index, KEYS[#KEYS] = the task key.
# (Counted from the end, so the script does not depend on how many states there are.)
# ARGV[1] = schedule name, ARGV[2] = period start (epoch s), ARGV[3] = task id, ARGV[4] = task
# name, ARGV[5] = args JSON, ARGV[6] = note for the history, ARGV[7] = queue ('' = default),
# ARGV[8] = priority ('' = normal).
# Returns {code, created_at}: one of the FIRE_* codes above and Redis's TIME as text (the task's
# created_at when created). The marker only ever moves forward, in the same call that creates the
# task: the same period never runs twice, whichever schedulers race or crash.
FIRE = _PRELUDE + """
local n = #KEYS
local markers, index, key = KEYS[n - 2], KEYS[n - 1], KEYS[n]
local name, period = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_text = string.format('%.6f', now)
if not period or period > now + 1 then return {-1, now_text} end
local last = redis.call('HGET', markers, name)
if not last then
  redis.call('HSET', markers, name, ARGV[2])
  return {2, now_text}
end
local last_n = tonumber(last)
if not last_n or last_n ~= last_n or last_n > now + 1 then
  redis.call('HSET', markers, name, ARGV[2])
  return {3, now_text}
end
if last_n >= period then return {0, now_text} end
redis.call('HSET', markers, name, ARGV[2])
if redis.call('EXISTS', key) == 1 then return {4, now_text} end
record(key, index, ARGV[3], ARGV[4], ARGV[5], now_text, now, now, ARGV[6], ARGV[7], ARGV[8])
flush()
return {1, now_text}
"""
