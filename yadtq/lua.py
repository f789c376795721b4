"""Lua scripts that change a task's state atomically in Redis (one round trip per batch).

Every state change appends ``[state, time, worker, attempt, note]`` to the task's ``history`` and moves
the id between the per-state sorted sets and counters, so listings and totals never scan keys.
``FINISH`` is a compare-and-set on ``(state, attempt)``: a zombie worker whose attempt was superseded
cannot overwrite the newer attempt's outcome. ``CANCEL`` ends a waiting task at once and flags a
running one (``cancel_requested``); ``START`` and ``FINISH`` honour the flag, so a cancel that was
accepted always ends the task ``cancelled``, whichever script runs first. The scheduler's scripts
(delays, ETAs, retries after a backoff) are in ``yadtq.lua_due``.
"""

from yadtq.models import FINAL_STATES, STATES

# Shared prelude. KEYS[1] = counts hash, KEYS[2 .. K - 1] = the state sets in ``STATES`` order
# (``sets[name]``); the keys of each script start at KEYS[K] (K = len(STATES) + 2), as it states.
# Set and counter changes are collected per call and written at the end (``flush``): one ZADD / ZREM
# per set and one HINCRBY per state for the whole batch instead of four commands per task. A member
# added and removed again within the batch nets out, so the order of the moves is kept.
# History is a JSON array; ``append`` adds an entry to its text without decoding it.
# The set of a final state (``FINAL_STATES``, from the model) is scored by when the task
# finished, not when it was created: it is the retention sweeper's finish-time index
# (``yadtq.lua_retention``) at no extra memory; the other sets are scored by creation time.
_STATE_NAMES = ", ".join(f"'{s.value}'" for s in STATES)
_FINAL_NAMES = ", ".join(f"['{s.value}']=true" for s in sorted(FINAL_STATES))
_PRELUDE = (
    "\nlocal counts = KEYS[1]\nlocal sets = {}\n"
    "for i, name in ipairs({" + _STATE_NAMES + "}) do sets[name] = KEYS[1 + i] end\n"
    "local K = " + str(len(STATES) + 2) + "\n"
    "local final = {" + _FINAL_NAMES + "}\n"
) + """
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
-- ``score``: the creation time; ``at``: when the move happens (epoch s), the score in the set of a
-- final state (the server's clock when not given).
local function move(id, from, to, score, at)
  if from == to then return end
  if from then
    zrem(sets[from], id)
    deltas[from] = (deltas[from] or 0) - 1
  end
  if final[to] then
    if not at then
      local t = redis.call('TIME')
      at = tonumber(t[1]) + tonumber(t[2]) / 1e6
    end
    score = at
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
-- A stored attempt: a whole number >= 0, else nil (the hash is malformed).
local function count(value)
  local n = tonumber(value)
  if n and n >= 0 and n == math.floor(n) and n < 9007199254740992 then return n end
  return nil
end
-- A stored history: absent, or text shaped like a JSON array (``append`` adds to it).
local function listlike(history)
  return not history or (string.sub(history, 1, 1) == '[' and string.sub(history, -1) == ']')
end
-- A new ``queued`` record (index, state set; no queue / priority field for ''); its history text.
local function record(key, index, id, name, args, created_text, created, now, note, queue, prio)
  local history = cjson.encode({{'queued', created, false, 0, note}})
  redis.call('HSET', key, 'id', id, 'name', name, 'args', args, 'state', 'queued', 'attempt', 0,
    'created_at', created_text, 'updated_at', now, 'history', history)
  if queue ~= '' then redis.call('HSET', key, 'queue', queue) end
  if prio ~= '' then redis.call('HSET', key, 'priority', prio) end
  zadd(index, id, created)
  move(id, nil, 'queued', created)
  return history
end
"""

# KEYS[K] = index, KEYS[K + 1 ..] = task keys. Returns per task 1 if created, 0 if the id existed.
# ARGV[1] = now; per task 6 values: id, name, args JSON, created_at, queue, priority ('' = default).
CREATE = _PRELUDE + """
local now = ARGV[1]
local out = {}
for i = K + 1, #KEYS do
  local j = (i - K - 1) * 6 + 2
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    record(KEYS[i], KEYS[K], ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], tonumber(ARGV[j + 3]),
      now, false, ARGV[j + 4], ARGV[j + 5])
    out[#out + 1] = 1
  end
end
flush()
return out
"""

# KEYS[K] = index, KEYS[K + 1] = reset marker, KEYS[K + 2 ..] = task keys.
# ARGV[1] = worker, ARGV[2] = now, ARGV[3] = the suspect age (``SUSPECT_AGE``), ARGV[4] = the prefix of
# the workers' heartbeat keys, ARGV[5] = ms within which a worker that still runs has beaten; per task
# 7 values: id, name, args JSON, created_at, queue, priority, alone ('1': the caller runs it alone;
# else a task still in-progress from a start at least the suspect age old, by a worker that is gone,
# is not started: -6).
# A task in-progress is taken over from a worker that still runs (its heartbeat key holds the process
# that made the start, ``process``, beaten within ARGV[5] ms) at once: its partition was handed over
# in a rebalance, however long ago it started. From a worker that is gone (no heartbeat, another
# process under its id, or a beat too old) it is taken over alone, and that counts a death
# (``deaths``): the runner fails a task that died with its worker too often (``runner.EXTRA_STARTS``).
# Returns n values, then n deaths. Per task: the new attempt number (>= 1) to run, 0 if the task is
# already final (a duplicate delivery), -1 if it was cleared by a reset after it was sent, -2 if the
# stored name or args differ from the message's (a forged or reused id), -3 if the stored record is
# malformed (not a hash, no or unknown state, an attempt that is not a whole number, no name, args or
# created_at, a history that is not a JSON array), -4 if it is cancelled: already, or now, because a
# cancel was requested while it was in progress (a redelivery after its worker died or its partition
# moved), -5 if it is ``scheduled`` (not due yet: the scheduler sends it when it is), -6 if it is
# still in-progress from a start at least ARGV[3] s old on Redis's clock (``started_at``, written from
# TIME: hosts' clocks differ; started before and never finished: its worker is gone, and may have died
# of it) and the caller would not run it alone (``worker/suspects.py``).
# On -2, -3, -5 and -6 the record is left as it is.
SUSPECT_AGE = 2.0
"""Seconds: a task still in-progress from a start this old was started by a worker that died or was
stopped (one that lost its partition in a rebalance hands it back sooner), so ``START`` runs it
again only alone (``worker/suspects.py``)."""

START = _PRELUDE + """
local worker, now, suspect_age = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local beats, fresh_ms = ARGV[4], tonumber(ARGV[5])
local clock = redis.call('TIME')  -- a start's age: on Redis's clock, not on the hosts' (they differ)
local tnow = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local reset_at = tonumber(redis.call('GET', KEYS[K + 1]) or '0') or 0
-- this worker's process (its heartbeat's start time): one restarted under the same id is another
local me = redis.pcall('HGET', beats .. worker, 'started_at')
if type(me) ~= 'string' then me = '' end
-- does the worker that made a start still run, as the same process, beating?
local function runs(owner, process)
  if not owner or not process or process == '' then return false end
  local beat = redis.pcall('HMGET', beats .. owner, 'started_at', 'ttl_ms')
  if beat.err or beat[1] ~= process then return false end
  local left = redis.call('PTTL', beats .. owner)
  return left > 0 and (tonumber(beat[2]) or 0) - left < fresh_ms
end
local out, deaths_of = {}, {}
for i = K + 2, #KEYS do
  local key = KEYS[i]
  local j = (i - K - 2) * 7 + 6
  local id, name, args, created = ARGV[j], ARGV[j + 1], ARGV[j + 2], tonumber(ARGV[j + 3])
  local cur = redis.pcall('HMGET', key, 'state', 'attempt', 'history', 'name', 'args', 'created_at',
    'cancel_requested', 'started_at', 'worker', 'process', 'deaths')
  local res = nil
  local state, attempt, history, score
  if cur.err then
    res = -3
  else
    state, attempt, history, score = cur[1], count(cur[2]), cur[3], tonumber(cur[6])
    if not state then
      if cur[2] or cur[4] or cur[5] or cur[6] or cur[7] then
        res = -3
      elseif created <= reset_at then
        res = -1
      else
        -- the message reached Kafka but its record is missing: recreate it from the message
        history = record(key, KEYS[K], id, name, args, ARGV[j + 3], created, now,
          'record recreated by worker', ARGV[j + 4], ARGV[j + 5])
        state, attempt, score = 'queued', 0, created
        cur[4], cur[5] = name, args
      end
    end
  end
  if res then
    out[#out + 1] = res
  elseif not sets[state] or not attempt or not score or not cur[4] or not cur[5]
      or not listlike(history) then
    out[#out + 1] = -3
  elseif cur[4] ~= name or cur[5] ~= args then
    out[#out + 1] = -2
  elseif state == 'cancelled' then
    out[#out + 1] = -4
  elseif final[state] then
    out[#out + 1] = 0
  elseif state == 'scheduled' then
    out[#out + 1] = -5
  elseif cur[7] then
    redis.call('HSET', key, 'state', 'cancelled', 'updated_at', now, 'finished_at', now,
      'error', 'cancelled (requested while attempt ' .. attempt .. ' was in progress)',
      'history', append(history, {'cancelled', now, worker, attempt, 'not started again: cancelled'}))
    move(id, state, 'cancelled', score, now)
    out[#out + 1] = -4
  else
    local gone = state == 'in-progress' and not runs(cur[9], cur[10])
    if gone and ARGV[j + 6] ~= '1' and tnow - (tonumber(cur[8]) or 0) >= suspect_age then
      out[#out + 1] = -6
    else
      attempt = attempt + 1
      local deaths = count(cur[11]) or 0
      if gone then deaths = deaths + 1 end
      local note = false
      if state == 'in-progress' then note = 'took over from an earlier attempt' end
      local fields = {'state', 'in-progress', 'worker', worker, 'attempt', attempt,
        'updated_at', now, 'started_at', tnow, 'process', me,
        'history', append(history, {'in-progress', now, worker, attempt, note})}
      if deaths > 0 then fields[#fields + 1] = 'deaths'; fields[#fields + 1] = deaths end
      redis.call('HSET', key, unpack(fields))
      move(id, state, 'in-progress', score)
      out[#out + 1] = attempt
      deaths_of[#out] = deaths
    end
  end
end
flush()
local n = #out
for k = 1, n do out[n + k] = deaths_of[k] or 0 end
return out
"""

# KEYS[K] = rate key of this second, KEYS[K + 1] = due set, KEYS[K + 2 ..] = task keys.
# ARGV[1] = worker, ARGV[2] = now, ARGV[3] = the channel that hears the ids written final (a JSON array);
# per task 7 values: id, attempt, new state, result JSON, error, note, delay. The new state is completed,
# failed, cancelled, queued (handed back unstarted: Kafka delivers it again) or scheduled (a retry after a
# backoff): then ``due_at`` = Redis's TIME + delay and the id goes into the due set in this same script,
# so the scheduler sends it when due. When a cancel was requested meanwhile (``cancel_requested``), any of
# them is written as cancelled: never retried, never failed (a completed attempt's result is kept).
# Returns per task 1 if written, 0 if fenced (the task is no longer this attempt's) or if the stored
# record is malformed (not a hash, no created_at, a history that is not a JSON array).
FINISH = _PRELUDE + """
local worker, now = ARGV[1], tonumber(ARGV[2])
local out = {}
local finished, done = 0, {}
local clock = redis.call('TIME')
local tnow = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i = K + 2, #KEYS do
  local key = KEYS[i]
  local j = (i - K - 2) * 7 + 4
  local id, attempt, new = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2]
  local cur = redis.pcall('HMGET', key, 'state', 'attempt', 'history', 'created_at',
    'cancel_requested')
  local score = not cur.err and tonumber(cur[4])
  if score and cur[1] == 'in-progress' and tonumber(cur[2]) == attempt and listlike(cur[3]) then
    local err = ARGV[j + 4]
    local note = ARGV[j + 5]
    if note == '' then note = false end
    if cur[5] and new ~= 'cancelled' then
      local ended = {['completed']='completed first: its result is kept',
        ['failed']='failed first', ['queued']='not retried, not started again',
        ['scheduled']='failed first; not retried'}
      note = 'cancelled on request (the attempt ' .. (ended[new] or new) .. ')'
      if err ~= '' then err = 'cancelled; the attempt ended with: ' .. err else err = 'cancelled' end
      new = 'cancelled'
    end
    local history = append(cur[3], {new, now, worker, attempt, note})
    if final[new] then
      redis.call('HSET', key, 'state', new, 'result', ARGV[j + 3], 'error', err,
        'updated_at', now, 'history', history, 'finished_at', now)
      redis.call('HDEL', key, 'process')  -- only START reads it: a finished record keeps no bytes of it
      finished = finished + 1
      done[finished] = id
    elseif new == 'scheduled' then
      local due = tnow + (tonumber(ARGV[j + 6]) or 0)
      redis.call('HSET', key, 'state', new, 'result', ARGV[j + 3], 'error', err,
        'updated_at', now, 'history', history, 'due_at', string.format('%.6f', due))
      zadd(KEYS[K + 1], id, due)
    else
      redis.call('HSET', key, 'state', new, 'result', ARGV[j + 3], 'error', err,
        'updated_at', now, 'history', history)
    end
    move(id, 'in-progress', new, score, now)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
if finished > 0 then
  redis.call('INCRBY', KEYS[K], finished)
  redis.call('EXPIRE', KEYS[K], 120)
  redis.call('PUBLISH', ARGV[3], cjson.encode(done))
end
return out
"""

# KEYS[K] = task key. ARGV[1] = now, ARGV[2] = expected state, ARGV[3] = new state,
# ARGV[4] = note, ARGV[5] = error ('' keeps none), ARGV[6] = expected attempt ('' = any).
# Moves one task from one state to another if it is still in the expected state.
# Returns 1 if moved, 0 if not (another change came first, or the stored record is malformed:
# no id or created_at, an attempt that is not a whole number, a history that is not a JSON array),
# -1 if the task does not exist (or has no state).
TRANSITION = _PRELUDE + """
local key, now = KEYS[K], tonumber(ARGV[1])
local cur = redis.call('HMGET', key, 'state', 'attempt', 'history', 'created_at', 'id')
if not cur[1] then return -1 end
if cur[1] ~= ARGV[2] then return 0 end
local attempt, score = count(cur[2]), tonumber(cur[4])
if not attempt or not score or not cur[5] or not listlike(cur[3]) then return 0 end
if ARGV[6] ~= '' and attempt ~= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', key, 'state', ARGV[3], 'updated_at', now, 'error', ARGV[5],
  'history', append(cur[3], {ARGV[3], now, false, attempt, ARGV[4]}))
if ARGV[3] == 'queued' then redis.call('HDEL', key, 'result', 'finished_at') end
move(cur[5], cur[1], ARGV[3], score, now)
flush()
return 1
"""

# KEYS[K] = due set (scheduled ids), KEYS[K + 1] = task key, KEYS[K + 2] = the cancel-request
# counter. ARGV[1] = now, ARGV[2] = note.
# A queued or scheduled task becomes cancelled at once (out of the due set too): it never starts
# (START refuses it). An in-progress one gets ``cancel_requested`` = now and the counter is bumped:
# its worker sees the counter move within a second, finds the flag and interrupts the task, and
# FINISH (or a START of a redelivery) writes cancelled.
# Returns {code, state before}: 1 cancelled, 2 cancel requested (asked before too: 2 again,
# nothing changed), 0 already final (nothing changed), -1 no such task, -3 malformed record (no id,
# attempt or created_at, an unknown state, a history that is not a JSON array; nothing changed).
CANCEL = _PRELUDE + """
local key, now, note = KEYS[K + 1], tonumber(ARGV[1]), ARGV[2]
local cur = redis.pcall('HMGET', key, 'state', 'attempt', 'history', 'created_at', 'id',
  'cancel_requested')
if cur.err then return {-3, ''} end
local state = cur[1]
if not state then
  if cur[2] or cur[3] or cur[4] or cur[5] then return {-3, ''} end
  return {-1, ''}
end
if final[state] then return {0, state} end
local attempt, score, id = count(cur[2]), tonumber(cur[4]), cur[5]
if not sets[state] or not attempt or not score or not id or not listlike(cur[3]) then
  return {-3, state}
end
if state == 'in-progress' then
  if not cur[6] then
    redis.call('HSET', key, 'cancel_requested', now, 'updated_at', now,
      'history', append(cur[3], {'in-progress', now, false, attempt, 'cancel requested'}))
    redis.pcall('INCR', KEYS[K + 2])  -- a counter that is not one: the workers read every second
  end
  return {2, state}
end
redis.call('HSET', key, 'state', 'cancelled', 'cancel_requested', now, 'updated_at', now,
  'finished_at', now, 'error', note,
  'history', append(cur[3], {'cancelled', now, false, attempt, note}))
redis.call('ZREM', KEYS[K], id)
move(id, state, 'cancelled', score, now)
flush()
return {1, state}
"""
