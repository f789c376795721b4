"""Lua scripts that change a task's state atomically in Redis (one round trip per batch).

Every state change appends ``[state, time, worker, attempt, note]`` to the task's ``history`` and moves
the id between the per-state sorted sets and counters, so listings and totals never scan keys.
``FINISH`` is a compare-and-set on ``(state, attempt)``: a zombie worker whose attempt was superseded
cannot overwrite the newer attempt's outcome.
"""

# Shared prelude. KEYS[1] = counts hash, KEYS[2..5] = state sets (queued, in-progress, completed,
# failed). Task keys follow at the offset each script states.
# Set and counter changes are collected per call and written at the end (``flush``): one ZADD / ZREM
# per set and one HINCRBY per state for the whole batch instead of four commands per task. A member
# added and removed again within the batch nets out, so the order of the moves is kept.
# History is a JSON array; ``append`` adds an entry to its text without decoding it.
_PRELUDE = """
local counts = KEYS[1]
local sets = {['queued']=KEYS[2], ['in-progress']=KEYS[3], ['completed']=KEYS[4], ['failed']=KEYS[5]}
local adds, rems, deltas = {}, {}, {}
local function zadd(set, id, score)
  if not adds[set] then adds[set] = {} end
  if rems[set] then rems[set][id] = nil end
  adds[set][id] = score
end
local function zrem(set, id)
  if not rems[set] then rems[set] = {} end
  if adds[set] then adds[set][id] = nil end
  rems[set][id] = true
end
local function move(id, from, to, score)
  if from == to then return end
  if from then
    zrem(sets[from], id)
    deltas[from] = (deltas[from] or 0) - 1
  end
  zadd(sets[to], id, score)
  deltas[to] = (deltas[to] or 0) + 1
end
local function flush()
  for set, members in pairs(rems) do
    local args = {}
    for id in pairs(members) do
      args[#args + 1] = id
      if #args >= 1000 then redis.call('ZREM', set, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZREM', set, unpack(args)) end
  end
  for set, members in pairs(adds) do
    local args = {}
    for id, score in pairs(members) do
      args[#args + 1] = score
      args[#args + 1] = id
      if #args >= 1000 then redis.call('ZADD', set, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZADD', set, unpack(args)) end
  end
  for state, delta in pairs(deltas) do
    if delta ~= 0 then redis.call('HINCRBY', counts, state, delta) end
  end
end
local function append(history, entry)
  local item = cjson.encode(entry)
  if not history or history == '' or history == '[]' then return '[' .. item .. ']' end
  return string.sub(history, 1, -2) .. ',' .. item .. ']'
end
"""

# KEYS[6] = index, KEYS[7..] = task keys.
# ARGV[1] = now; per task 4 values: id, name, args JSON, created_at.
# Returns per task 1 if created, 0 if the id already existed.
CREATE = _PRELUDE + """
local now = ARGV[1]
local out = {}
for i = 7, #KEYS do
  local j = (i - 7) * 4 + 2
  local id, created = ARGV[j], tonumber(ARGV[j + 3])
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[i], 'id', id, 'name', ARGV[j + 1], 'args', ARGV[j + 2],
      'state', 'queued', 'attempt', 0, 'created_at', ARGV[j + 3], 'updated_at', now,
      'history', cjson.encode({{'queued', created, false, 0, false}}))
    zadd(KEYS[6], id, created)
    move(id, nil, 'queued', created)
    out[#out + 1] = 1
  end
end
flush()
return out
"""

# KEYS[6] = index, KEYS[7] = reset marker, KEYS[8..] = task keys.
# ARGV[1] = worker, ARGV[2] = now; per task 4 values: id, name, args JSON, created_at.
# Returns per task: the new attempt number (>= 1) to run, 0 if the task is already final
# (a duplicate delivery), -1 if it was cleared by a reset after it was sent.
START = _PRELUDE + """
local worker, now = ARGV[1], tonumber(ARGV[2])
local reset_at = tonumber(redis.call('GET', KEYS[7]) or '0')
local out = {}
for i = 8, #KEYS do
  local key = KEYS[i]
  local j = (i - 8) * 4 + 3
  local id, created = ARGV[j], tonumber(ARGV[j + 3])
  local cur = redis.call('HMGET', key, 'state', 'attempt', 'history')
  local state, attempt, history = cur[1], tonumber(cur[2] or '0'), cur[3]
  if not state then
    if created <= reset_at then
      out[#out + 1] = -1
    else
      -- the message reached Kafka but its record is missing: recreate it from the message
      history = cjson.encode({{'queued', created, false, 0, 'record recreated by worker'}})
      redis.call('HSET', key, 'id', id, 'name', ARGV[j + 1], 'args', ARGV[j + 2],
        'state', 'queued', 'attempt', 0, 'created_at', ARGV[j + 3], 'history', history)
      zadd(KEYS[6], id, created)
      move(id, nil, 'queued', created)
      state, attempt = 'queued', 0
    end
  end
  if state == 'completed' or state == 'failed' then
    out[#out + 1] = 0
  elseif state then
    attempt = attempt + 1
    local note = false
    if state == 'in-progress' then note = 'took over from an earlier attempt' end
    redis.call('HSET', key, 'state', 'in-progress', 'worker', worker, 'attempt', attempt,
      'updated_at', now, 'started_at', now,
      'history', append(history, {'in-progress', now, worker, attempt, note}))
    move(id, state, 'in-progress', created)
    out[#out + 1] = attempt
  end
end
flush()
return out
"""

# KEYS[6] = rate key of this second, KEYS[7..] = task keys.
# ARGV[1] = worker, ARGV[2] = now; per task 6 values: id, attempt, new state, result JSON, error, note.
# The new state is completed, failed, or queued (a retry will run later).
# Returns per task 1 if written, 0 if fenced (the task is no longer this attempt's).
FINISH = _PRELUDE + """
local worker, now = ARGV[1], tonumber(ARGV[2])
local out = {}
local finished = 0
for i = 7, #KEYS do
  local key = KEYS[i]
  local j = (i - 7) * 6 + 3
  local id, attempt, new = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2]
  local cur = redis.call('HMGET', key, 'state', 'attempt', 'history', 'created_at')
  if cur[1] == 'in-progress' and tonumber(cur[2]) == attempt then
    local err = ARGV[j + 4]
    local note = ARGV[j + 5]
    if note == '' then note = false end
    local history = append(cur[3], {new, now, worker, attempt, note})
    if new ~= 'queued' then
      redis.call('HSET', key, 'state', new, 'result', ARGV[j + 3], 'error', err,
        'updated_at', now, 'history', history, 'finished_at', now)
      finished = finished + 1
    else
      redis.call('HSET', key, 'state', new, 'result', ARGV[j + 3], 'error', err,
        'updated_at', now, 'history', history)
    end
    move(id, 'in-progress', new, tonumber(cur[4]))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
if finished > 0 then
  redis.call('INCRBY', KEYS[6], finished)
  redis.call('EXPIRE', KEYS[6], 120)
end
return out
"""

# KEYS[6] = task key. ARGV[1] = now, ARGV[2] = expected state, ARGV[3] = new state,
# ARGV[4] = note, ARGV[5] = error ('' keeps none), ARGV[6] = expected attempt ('' = any).
# Moves one task from one state to another if it is still in the expected state.
# Returns 1 if moved, 0 if not (another change came first), -1 if the task does not exist.
TRANSITION = _PRELUDE + """
local key, now = KEYS[6], tonumber(ARGV[1])
local cur = redis.call('HMGET', key, 'state', 'attempt', 'history', 'created_at', 'id')
if not cur[1] then return -1 end
if cur[1] ~= ARGV[2] then return 0 end
if ARGV[6] ~= '' and tonumber(cur[2]) ~= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', key, 'state', ARGV[3], 'updated_at', now, 'error', ARGV[5],
  'history', append(cur[3], {ARGV[3], now, false, tonumber(cur[2]), ARGV[4]}))
if ARGV[3] == 'queued' then redis.call('HDEL', key, 'result', 'finished_at') end
move(cur[5], cur[1], ARGV[3], tonumber(cur[4]))
flush()
return 1
"""

# One dashboard refresh in one round trip (read-only but for pruning long-dead workers).
# KEYS[1] = task index (all or one state), KEYS[2] = counts, KEYS[3] = workers, KEYS[4] = workers' last
# beats, KEYS[5..] = per-second rate keys. ARGV[1] = page size, ARGV[2] = task key prefix, ARGV[3] =
# worker key prefix, ARGV[4] = forget workers last seen at or before this time, ARGV[5..] = the task
# fields to read. The task and worker keys are built here from their prefixes: ids come from the
# index, so they cannot be declared in advance (a single Redis, not a cluster).
# Returns {tasks (field values each), counts (flat), rates, workers (flat: id, last seen, beat
# (flat), last beat JSON)}.
VIEW = """
local limit = tonumber(ARGV[1])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local tasks = {}
if limit > 0 then
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, limit - 1)) do
    tasks[#tasks + 1] = redis.call('HMGET', ARGV[2] .. id, unpack(fields))
  end
end
local rates = {}
if #KEYS > 4 then
  local rate_keys = {}
  for i = 5, #KEYS do rate_keys[#rate_keys + 1] = KEYS[i] end
  rates = redis.call('MGET', unpack(rate_keys))
end
local cutoff = tonumber(ARGV[4])
local known = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local workers, old = {}, {}
for i = 1, #known, 2 do
  local id, seen = known[i], known[i + 1]
  if tonumber(seen) <= cutoff then
    old[#old + 1] = id
  else
    workers[#workers + 1] = id
    workers[#workers + 1] = seen
    workers[#workers + 1] = redis.call('HGETALL', ARGV[3] .. id)
    workers[#workers + 1] = redis.call('HGET', KEYS[4], id)
  end
end
if #old > 0 then
  redis.call('ZREM', KEYS[3], unpack(old))
  redis.call('HDEL', KEYS[4], unpack(old))
end
return {tasks, redis.call('HGETALL', KEYS[2]), rates, workers}
"""
