"""Lua scripts that remove finished tasks: retention expiry (``SWEEP``) and ``yadtq purge``
(``PURGE``). Used by ``yadtq.retention``.

Each call handles at most ``limit`` ids (the caller loops), so no call blocks Redis for long however
large the backlog. A task is removed whole in one step: its hash, its entries in the index of every
task, its final state's set, the finish-time index, and one off its state's counter. So what is
listed and the counts agree at every moment. A task whose stored state is not final is never
removed: a stale entry of it in the finish-time index is dropped instead. A key that is not a hash
(a malformed record) is left alone.

Both scripts share the same KEYS and the first ARGV:
KEYS[1] = counts hash, KEYS[2] = index of every task, KEYS[3] = finish-time index,
KEYS[4..] = the set of each final state, in the order of the names in ARGV.
ARGV[1] = task key prefix (``<p>:task:``; the ids come from the indexes, so their keys are built
here: a single Redis, not a cluster, as ``VIEW`` does), ARGV[2] = F, the number of final states,
ARGV[3..2+F] = their names. The script's own arguments follow at ARGV[3+F].
"""

_PRELUDE = """
local counts, index, finished, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local nfinal = tonumber(ARGV[2])
local sets = {}
for i = 1, nfinal do sets[ARGV[2 + i]] = KEYS[3 + i] end
local function arg(n) return ARGV[2 + nfinal + n] end
-- Drop the id's index entries (and one off each counter whose set held it).
local function unindex(id, state)
  if state then
    if redis.call('ZREM', sets[state], id) == 1 then redis.call('HINCRBY', counts, state, -1) end
  else
    for name, set in pairs(sets) do
      if redis.call('ZREM', set, id) == 1 then redis.call('HINCRBY', counts, name, -1) end
    end
  end
  redis.call('ZREM', index, id)
  redis.call('ZREM', finished, id)
end
-- Remove one finished task. ``only``: its state must be this one, and ``before``: it must have
-- finished (``updated_at``) at or before this time, else it is kept. Returns 1 when its hash was
-- deleted, 2 when only index entries of a task whose hash was gone were, 0 when it was kept.
local function remove(id, only, before)
  local key = prefix .. id
  local row = redis.pcall('HMGET', key, 'state', 'updated_at')
  if row.err then
    redis.call('ZREM', finished, id)
    return 0
  end
  local state = row[1]
  if not state then
    if redis.call('EXISTS', key) == 1 then
      redis.call('ZREM', finished, id)
      return 0
    end
    unindex(id, nil)
    return 2
  end
  if not sets[state] then
    redis.call('ZREM', finished, id)
    return 0
  end
  if only and state ~= only then return 0 end
  if before then
    local at = tonumber(row[2])
    if not at or at > before then return 0 end
  end
  redis.call('DEL', key)
  unindex(id, state)
  return 1
end
"""

# Expire what finished at or before a time, oldest first, through the finish-time index.
# ARGV[3+F] = cutoff (epoch s), ARGV[4+F] = most ids to look at.
# Returns {tasks removed, ids looked at}: every id looked at leaves the finish-time index (removed
# or, when it is not final any more, just dropped from it), so the next call goes on after them.
SWEEP = _PRELUDE + """
local ids = redis.call('ZRANGEBYSCORE', finished, '-inf', arg(1), 'LIMIT', 0, tonumber(arg(2)))
local removed = 0
for _, id in ipairs(ids) do
  if remove(id, nil, nil) == 1 then removed = removed + 1 end
end
return {removed, #ids}
"""

# Remove the tasks of one final state that finished (``updated_at``) at or before a time. Walks that
# state's set (scored by creation time, which is never after the finish) up to the cutoff, so records
# written before the finish-time index existed are found too.
# ARGV[3+F] = cutoff (epoch s), ARGV[4+F] = the state, ARGV[5+F] = ids to skip (kept by earlier
# calls), ARGV[6+F] = most ids to look at.
# Returns {tasks removed, ids kept, ids looked at}: the caller adds the kept ones to its skip.
PURGE = _PRELUDE + """
local cutoff, state = tonumber(arg(1)), arg(2)
local ids = redis.call('ZRANGEBYSCORE', sets[state], '-inf', cutoff, 'LIMIT', tonumber(arg(3)),
  tonumber(arg(4)))
local removed, kept = 0, 0
for _, id in ipairs(ids) do
  local done = remove(id, state, cutoff)
  if done == 1 then
    removed = removed + 1
  elseif done == 0 then
    kept = kept + 1
  end
end
return {removed, kept, #ids}
"""
