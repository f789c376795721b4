"""The Lua scripts of periodic schedules (``yadtq.schedule_store``): ``FIRE`` fires one period,
``PUBLISH`` publishes a worker's schedules and forgets the ones nobody published for a day.

Their own module because ``yadtq.lua`` is near the size limit; ``FIRE`` reuses that module's
prelude, so the task record it writes is exactly the one ``CREATE`` writes.
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

# KEYS[1] = the schedules hash. ARGV[1] = the cutoff (epoch s, Redis's clock): an entry whose
# ``published_at`` is a number before it is removed; ARGV[2..] = name, JSON pairs to publish.
# Returns the names removed. Written first, then swept, in one script: a schedule this call (or
# any publish before it) declares is never removed, and a publish that runs after it re-adds what
# it removed. An entry without a finite numeric ``published_at`` (an older worker's, text edited
# by hand, not JSON) is never removed. The markers (``schedules:last``) are kept for good.
PUBLISH = """
local key, cutoff = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
local removed = {}
local entries = redis.call('HGETALL', key)
for i = 1, #entries, 2 do
  local ok, data = pcall(cjson.decode, entries[i + 1])
  if ok and type(data) == 'table' then
    local at = data['published_at']
    if type(at) == 'number' and at == at and at > -math.huge and at < cutoff then
      redis.call('HDEL', key, entries[i])
      removed[#removed + 1] = entries[i]
    end
  end
end
return removed
"""
