"""Lua scripts of the scheduler: tasks due later (a delay, an ETA, a retry's backoff).

A ``scheduled`` task sits in the due set (``Keys.due``: id -> due time). The leader's ``CLAIM`` moves
the ids that are due, in due order, to the dispatching set (``Keys.dispatching``: id -> lease
deadline), flips them ``scheduled -> queued`` and returns what to send; after Kafka acknowledges them
the dispatcher removes them from the dispatching set. A dispatcher that dies in between leaves them
there: once their lease expires the next ``CLAIM`` returns them again (at least once; a task that
already started or finished is dropped instead, and START skips a redelivered final task).
Every time here is Redis's ``TIME`` (one clock for every scheduler), never the caller's. The shared
prelude (counts, per-state sets, ``move``, ``append``) and its ``KEYS[1..K-1]`` layout are
``yadtq.lua``'s.
"""

from yadtq.lua import _PRELUDE

_CLOCK = """
local clock = redis.call('TIME')
local tnow = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function stamp(t) return string.format('%.6f', t) end
"""

# KEYS[K] = task index, KEYS[K+1] = due set, KEYS[K+2..] = task keys.
# ARGV[1] = now (the caller's clock: created/updated stamps); per task 8 values: id, name, args JSON,
# created_at, due, relative ('1': due is seconds after Redis's TIME, '0': epoch seconds), queue
# ('' = default: no field), priority ('' = normal: no field).
# Records each task as ``scheduled`` with ``due_at`` and adds it to the due set.
# Returns per task its due time (text) if created, 0 if the id already existed.
SCHEDULE = _PRELUDE + _CLOCK + """
local now = ARGV[1]
local out = {}
for i = K + 2, #KEYS do
  local j = (i - K - 2) * 8 + 2
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    local id, created = ARGV[j], tonumber(ARGV[j + 3])
    local due = tonumber(ARGV[j + 4])
    if ARGV[j + 5] == '1' then due = tnow + due end
    local history = cjson.encode({{'scheduled', created, false, 0, 'delayed'}})
    redis.call('HSET', KEYS[i], 'id', id, 'name', ARGV[j + 1], 'args', ARGV[j + 2],
      'state', 'scheduled', 'attempt', 0, 'created_at', ARGV[j + 3], 'updated_at', now,
      'due_at', stamp(due), 'history', history)
    if ARGV[j + 6] ~= '' then redis.call('HSET', KEYS[i], 'queue', ARGV[j + 6]) end
    if ARGV[j + 7] ~= '' then redis.call('HSET', KEYS[i], 'priority', ARGV[j + 7]) end
    zadd(KEYS[K], id, created)
    move(id, nil, 'scheduled', created)
    zadd(KEYS[K + 1], id, due)
    out[#out + 1] = stamp(due)
  end
end
flush()
return out
"""

# Why a stored record cannot be dispatched (or false). ``cur`` = HMGET state, attempt, history,
# name, args, created_at, id, due_at, queue, priority (a pcall: ``cur.err`` for a key that is not a hash).
_CHECK = """
local function problem(id, cur)
  if cur.err then return 'not a task record (the key is not a hash)' end
  if not sets[cur[1]] then return 'unknown state ' .. tostring(cur[1]) end
  if not count(cur[2]) then return 'attempt is not a whole number' end
  if not listlike(cur[3]) then return 'history is not a JSON array' end
  if not cur[4] or not cur[5] then return 'no name or args' end
  local ok, args = pcall(cjson.decode, cur[5])
  if not ok or type(args) ~= 'table' then return 'args is not a JSON array' end
  if not tonumber(cur[6]) then return 'created_at is not a number' end
  if cur[7] ~= id then return 'id field does not match its key' end
  if cur[9] and (#cur[9] > 64 or not string.match(cur[9], '^[%w_%-]+$')) then
    return 'queue is not a queue name'
  end
  if cur[10] and cur[10] ~= 'high' and cur[10] ~= 'normal' and cur[10] ~= 'low' then
    return 'priority is not a priority'
  end
  return false
end
local FIELDS = {'state', 'attempt', 'history', 'name', 'args', 'created_at', 'id', 'due_at',
  'queue', 'priority'}
"""

# KEYS[K] = due set, KEYS[K+1] = dispatching set, KEYS[K+2] = the scheduler's lock.
# ARGV[1] = owner, ARGV[2] = lock TTL (ms), ARGV[3] = most ids to return, ARGV[4] = lease (s),
# ARGV[5] = task key prefix (ids come from the sets, so their keys cannot be declared in advance).
# Only the lock's owner claims (it takes a free lock and renews its own: a leader that lost the lock
# claims nothing). First the expired leases: an id whose task is still ``queued`` is leased again
# and returned, any other is dropped (it was delivered, or cancelled, reset...). Then the due ids in
# due order: a ``scheduled`` task goes to ``queued`` (history note 'due') and into the dispatching
# set; an id whose task is missing or no longer scheduled is dropped; one whose record is
# malformed is dropped and reported.
# Returns {1, send (flat: id, name, args, created_at, due_at, queue, priority), dropped, malformed
# (flat: id, why), next due time or false, now} for the leader, {0} for anyone else.
CLAIM = _PRELUDE + _CLOCK + _CHECK + """
local lock = KEYS[K + 2]
local holder = redis.call('GET', lock)
if holder and holder ~= ARGV[1] then return {0} end
if holder then redis.call('PEXPIRE', lock, ARGV[2]) else redis.call('SET', lock, ARGV[1], 'PX', ARGV[2]) end
local due, leased = KEYS[K], KEYS[K + 1]
local limit, lease, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local send, malformed, dropped, sent = {}, {}, 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', tnow, 'LIMIT', 0, limit)) do
  local cur = redis.pcall('HMGET', prefix .. id, unpack(FIELDS))
  if not cur.err and cur[1] == 'queued' and not problem(id, cur) then
    zadd(leased, id, tnow + lease)
    send[#send + 1] = id; send[#send + 1] = cur[4]; send[#send + 1] = cur[5]
    send[#send + 1] = cur[6]; send[#send + 1] = cur[8] or false; send[#send + 1] = cur[9] or false
    send[#send + 1] = cur[10] or false
    sent = sent + 1
  else
    zrem(leased, id)
    dropped = dropped + 1
  end
end
if sent < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', tnow, 'LIMIT', 0, limit - sent)) do
    local key = prefix .. id
    local cur = redis.pcall('HMGET', key, unpack(FIELDS))
    zrem(due, id)
    if not cur.err and not cur[1] and not cur[4] and not cur[7] then
      dropped = dropped + 1  -- no such task (deleted, reset)
    elseif not cur.err and sets[cur[1]] and cur[1] ~= 'scheduled' then
      dropped = dropped + 1  -- cancelled, or started by another path
    else
      local why = problem(id, cur)
      if why then
        malformed[#malformed + 1] = id; malformed[#malformed + 1] = why
      else
        local attempt = count(cur[2])
        redis.call('HSET', key, 'state', 'queued', 'updated_at', stamp(tnow),
          'history', append(cur[3], {'queued', tnow, false, attempt, 'due'}))
        move(id, 'scheduled', 'queued', tonumber(cur[6]))
        zadd(leased, id, tnow + lease)
        send[#send + 1] = id; send[#send + 1] = cur[4]; send[#send + 1] = cur[5]
        send[#send + 1] = cur[6]; send[#send + 1] = cur[8] or false
        send[#send + 1] = cur[9] or false; send[#send + 1] = cur[10] or false
        sent = sent + 1
      end
    end
  end
end
flush()
local nxt = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
return {1, send, dropped, malformed, nxt[2] or false, stamp(tnow)}
"""

# KEYS[1] = counts (unused: the prelude's layout), KEYS[2..K-1] = state sets, KEYS[K] = due set,
# KEYS[K+1] = dispatching set. ARGV[1] = task key prefix, ARGV[2] = first rank, ARGV[3] = how many.
# Reads one page of the ``scheduled`` set (by rank) and puts back into the due set every task that
# is ``scheduled``, well-formed, and in neither the due nor the dispatching set (a lost write),
# due at its ``due_at`` (now if that is unreadable).
# Returns {ids put back, ids read}.
RESTORE = _PRELUDE + _CLOCK + _CHECK + """
local due, leased, prefix = KEYS[K], KEYS[K + 1], ARGV[1]
local first = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', sets['scheduled'], first, first + tonumber(ARGV[3]) - 1)
local back = {}
for _, id in ipairs(ids) do
  if not redis.call('ZSCORE', due, id) and not redis.call('ZSCORE', leased, id) then
    local cur = redis.pcall('HMGET', prefix .. id, unpack(FIELDS))
    if not cur.err and cur[1] == 'scheduled' and not problem(id, cur) then
      redis.call('ZADD', due, tonumber(cur[8]) or tnow, id)
      back[#back + 1] = id
    end
  end
end
return {back, #ids}
"""
