"""The Lua script that removes finished tasks, for retention expiry and ``yadtq purge``
(``REMOVE``). Used by ``yadtq.retention``.

Each call handles at most ``limit`` ids (the caller loops), so no call blocks Redis for long however
large the backlog. A task is removed whole in one step: its hash, its entries in the index of every
task and its final state's set (its finish-time index), and one off its state's counter. So what is
listed and the counts agree at every moment. A task whose stored state is not final is never
removed, and neither is a key that is not a hash (a malformed record): both are kept and skipped.

The set of a final state is scored by finish time (``yadtq.lua``), so the tasks to remove are its
head. Records written before that scoring (by creation time, never after the finish) are found there
too and removed only once their ``updated_at`` (the finish) is past the cutoff.

KEYS[1] = counts hash, KEYS[2] = index of every task, KEYS[3..] = the set of each final state, in
the order of the names in ARGV.
ARGV[1] = task key prefix (``<p>:task:``; the ids come from the indexes, so their keys are built
here: a single Redis, not a cluster, as ``VIEW`` does), ARGV[2] = F, the number of final states,
ARGV[3..2+F] = their names. The script's own arguments follow at ARGV[3+F].
"""

_PRELUDE = """
local counts, index, prefix = KEYS[1], KEYS[2], ARGV[1]
local nfinal = tonumber(ARGV[2])
local sets = {}
for i = 1, nfinal do sets[ARGV[2 + i]] = KEYS[2 + i] end
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
end
-- Remove one finished task. ``only``: its state must be this one, and ``before``: it must have
-- finished (``updated_at``) at or before this time, else it is kept. Returns 1 when its hash was
-- deleted, 2 when only index entries of a task whose hash was gone were, 0 when it was kept.
local function remove(id, only, before)
  local key = prefix .. id
  local row = redis.pcall('HMGET', key, 'state', 'updated_at')
  if row.err then return 0 end
  local state = row[1]
  if not state then
    if redis.call('EXISTS', key) == 1 then return 0 end
    unindex(id, nil)
    return 2
  end
  if not sets[state] then return 0 end
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

# Remove the tasks of one final state that finished at or before a time, oldest first.
# ARGV[3+F] = cutoff (epoch s), ARGV[4+F] = the state, ARGV[5+F] = ids to skip (kept by earlier
# calls), ARGV[6+F] = most ids to look at.
# Returns {tasks removed, ids kept, ids looked at}: the caller adds the kept ones to its skip, and
# is done with the state when fewer ids than it asked for were looked at.
REMOVE = _PRELUDE + """
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
