"""Lua scripts that leave tasks as they are: the dashboard's refresh in one round trip (``VIEW``),
a worker's heartbeat (``HEARTBEAT``) and the leader locks (``ACQUIRE_LOCK``, ``RELEASE_LOCK``).
The state changes are in ``yadtq.lua``."""

# One dashboard refresh in one round trip (read-only but for pruning long-dead workers); with a
# page size of 0 and no rate keys it is the worker listing (``RedisStore.workers``).
# KEYS[1] = task index (all or one state), KEYS[2] = counts, KEYS[3] = workers, KEYS[4] = workers' last
# beats, KEYS[5] = repairs, KEYS[6..] = per-second rate keys. ARGV[1] = page size, ARGV[2] = task key
# prefix, ARGV[3] = worker key prefix, ARGV[4] = forget workers last seen at or before this time,
# ARGV[5..] = the task fields to read. The task and worker keys are built here from their prefixes:
# ids come from the index, so they cannot be declared in advance (a single Redis, not a cluster).
# Reads of stored records never fail the script: a key of the wrong type reads as an error text
# (a task) or as empty (a worker, the counters).
# Returns {tasks (flat: id, field values or an error text), counts (flat), rates, workers (flat: id,
# last seen, beat (flat), last beat JSON, ms since the beat on this server's clock or false),
# repairs (flat)}.
VIEW = """
local function hash(key)
  local got = redis.pcall('HGETALL', key)
  if got.err then return {} end
  return got
end
local limit = tonumber(ARGV[1])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local tasks = {}
if limit > 0 then
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, limit - 1)) do
    local row = redis.pcall('HMGET', ARGV[2] .. id, unpack(fields))
    if row.err then row = row.err end
    tasks[#tasks + 1] = id
    tasks[#tasks + 1] = row
  end
end
local rates = {}
if #KEYS > 5 then
  local rate_keys = {}
  for i = 6, #KEYS do rate_keys[#rate_keys + 1] = KEYS[i] end
  rates = redis.call('MGET', unpack(rate_keys))
end
local cutoff = tonumber(ARGV[4])
local clock = redis.call('TIME')
local tnow = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local known = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local workers, old = {}, {}
for i = 1, #known, 2 do
  local id, seen = known[i], known[i + 1]
  -- forgotten once last seen long ago by its own clock, unless its heartbeat key is there (a
  -- worker whose clock is far behind still beats)
  if tonumber(seen) <= cutoff and redis.call('EXISTS', ARGV[3] .. id) == 0 then
    old[#old + 1] = id
  else
    local last = redis.pcall('HGET', KEYS[4], id)
    if type(last) == 'table' then last = false end
    workers[#workers + 1] = id
    workers[#workers + 1] = seen
    local beat = hash(ARGV[3] .. id)
    workers[#workers + 1] = beat
    workers[#workers + 1] = last
    -- how long ago it beat, on this server's clock: alive, the TTL it set minus what is left of
    -- it; dead, since its score (``HEARTBEAT`` writes it from TIME)
    local age = false
    if #beat > 0 then
      local ttl
      for k = 1, #beat - 1, 2 do
        if beat[k] == 'ttl_ms' then ttl = tonumber(beat[k + 1]) end
      end
      local left = redis.call('PTTL', ARGV[3] .. id)
      if ttl and left >= 0 then age = math.max(0, ttl - left) end
    elseif tonumber(seen) then
      age = math.max(0, math.floor((tnow - tonumber(seen)) * 1000))
    end
    workers[#workers + 1] = age
  end
end
if #old > 0 then
  redis.call('ZREM', KEYS[3], unpack(old))
  redis.pcall('HDEL', KEYS[4], unpack(old))
end
return {tasks, hash(KEYS[2]), rates, workers, hash(KEYS[5])}
"""

# A worker's heartbeat, in one step (as the MULTI it replaces). KEYS[1] = its heartbeat key,
# KEYS[2] = workers, KEYS[3] = workers' last beats. ARGV[1] = worker id, ARGV[2] = TTL in ms, ARGV[3]
# = the beat as JSON (what a dead worker is shown from), ARGV[4..] = field, value pairs. The workers
# set is scored on this server's clock (TIME): how long ago a dead worker beat does not depend on
# its host's clock (``VIEW``).
HEARTBEAT = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
"""

# A lock held by one owner, with a TTL. KEYS[1] = lock key. ARGV[1] = owner, ARGV[2] = TTL in ms.
# Returns 1 if the owner holds the lock now (taken, or renewed because it held it), 0 if another does.
ACQUIRE_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1] = lock key, ARGV[1] = owner. Deletes the lock only if that owner holds it; 1 if deleted.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
