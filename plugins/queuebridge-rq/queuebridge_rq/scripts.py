"""Lua scripts: each lease transition is one atomic step inside Redis.

A job id is always in exactly one place: the queue list, the scheduled registry,
or a lease (``leases`` + RQ's ``wip`` registry, same member ``<id>:<token>``).
Scripts move it between places atomically, so a job is never in neither place and
never handed out twice, whatever runs concurrently (other workers, ``recover``).

One id, one copy: ``SEND`` leaves an id alone while its hash says ``queued``,
``scheduled`` or ``started`` with the same or a later attempt (this broker already
holds the job), so a re-sent id never gets a second queue entry nor rewrites the hash
of the copy that runs. A *later* attempt (a worker's retry sent through the router)
replaces it. A lease owns the hash while ``qb_lease`` names it: ``ACK`` and ``RECOVER``
touch the hash only then, so the ack that follows a retry sent that way leaves the
next attempt alone. The queue and the scheduled registry check the status they imply
(``queued``, ``scheduled``) before moving an id out, and drop an entry whose hash says
otherwise: a stale duplicate (left by an older version, or by a tool writing behind
our back) can neither run a second copy nor resurrect a finished job. An entry whose
hash is gone still moves on, to be delivered as malformed (the hash of a lost job)
and dead-lettered with the reason.

Per-queue keys are passed in groups of four: queue, leases, started, scheduled.
Job hashes are addressed from ``ARGV`` (``prefix .. id``), like RQ's own scripts.

Every clock comparison (lease expiry, "is this delayed job due", registry scores)
uses the Redis server's ``TIME``, read at the top of the script: hosts whose clocks
disagree still agree on when a lease expires. Only the envelope's ``not_before``
comes from a client (the producer's clock, when it computed ``delay``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACK", "BEAT", "CLAIM", "DEAD_LETTER", "RECOVER", "RELEASE", "RENEW", "RESERVE",
           "RETRY", "SEND", "TOUCH"]

# Sets ``now`` (seconds, float) from the server's clock. Comes first in every script that
# reads the clock: Redis < 5 replicates scripts verbatim and refuses writes after TIME
# unless the script asked, before writing, for its effects to be replicated (what
# Redis >= 5 always does; the call is a no-op there).
_NOW: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# True when the job hash ``key`` is a live copy (queued, scheduled or started) of
# ``attempt`` or a later one. A hash without ``qb_attempt`` counts as the first attempt.
_HOLDS: Final = """
local function holds(key, attempt)
  local held = redis.call('HMGET', key, 'status', 'qb_attempt')
  local status = held[1]
  if status ~= 'queued' and status ~= 'scheduled' and status ~= 'started' then
    return false
  end
  return (tonumber(held[2]) or 1) >= attempt
end
"""

# True when the lease ``member`` owns the job hash ``key``: ``qb_lease`` names it (or,
# for a hash leased before ``qb_lease`` existed, none is named and it is ``started``).
_OWNS: Final = """
local function owns(key, member)
  local held = redis.call('HMGET', key, 'qb_lease', 'status')
  return held[1] == member or (not held[1] and held[2] == 'started')
end
"""

# KEYS: rq:queues, then two per queue: queue list, scheduled registry.
# ARGV: job prefix, field count n, n field names, then per job: queue number (0-based
# into the KEYS pairs), id, not_before ('' = none), n field values.
# The last field must be ``qb_attempt``. Writes each job (status ``scheduled`` while
# not_before is ahead of the server's clock, else ``queued``) unless this broker already
# holds the same or a later attempt of its id. Returns how many were written.
SEND: Final = _NOW + _HOLDS + """
local prefix, n = ARGV[1], tonumber(ARGV[2])
local ready, written = {}, 0
local at = n + 3
while at <= #ARGV do
  local group, id, due = tonumber(ARGV[at]), ARGV[at + 1], tonumber(ARGV[at + 2])
  local key = prefix .. id
  if not holds(key, tonumber(ARGV[at + n + 2])) then
    local delayed = due ~= nil and due > now
    local fields = {'status', delayed and 'scheduled' or 'queued'}
    for f = 1, n do
      fields[f * 2 + 1], fields[f * 2 + 2] = ARGV[f + 2], ARGV[at + f + 2]
    end
    -- A finished or failed predecessor must not leave its expiry or fields behind.
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(fields))
    if delayed then
      redis.call('ZADD', KEYS[group * 2 + 3], due, id)
    else
      local ids = ready[group]
      if not ids then ids = {}; ready[group] = ids end
      ids[#ids + 1] = id
    end
    written = written + 1
  end
  at = at + n + 3
end
for group, ids in pairs(ready) do
  local queue = KEYS[group * 2 + 2]
  for first = 1, #ids, 1000 do
    redis.call('RPUSH', queue, unpack(ids, first, math.min(first + 999, #ids)))
  end
  redis.call('SADD', KEYS[1], queue)
end
return written
"""

# Moves up to 100 due jobs per queue from the scheduled registry to the queue (dropping
# stale entries: ids whose hash says they are no longer scheduled).
_PROMOTE: Final = """
local function promote(queue, scheduled, now, prefix, stamp)
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', scheduled, id)
    local status = redis.call('HGET', prefix .. id, 'status')
    if status == 'scheduled' then
      redis.call('RPUSH', queue, id)
      redis.call('HSET', prefix .. id, 'status', 'queued', 'enqueued_at', stamp)
    elseif not status then
      redis.call('RPUSH', queue, id)
    end
  end
  return #due
end
"""

# ARGV: lease timeout (seconds), token, job prefix, RQ timestamp, limit.
# Leases up to ``limit`` jobs, draining queues in priority order. Returns a flat array,
# five entries per job: queue index, member, data, meta, redelivered (empty: none due).
# Members are ``<id>:<token>-<n>``. An entry whose hash says anything but ``queued`` is a
# stale duplicate (its job is held elsewhere or done) and is dropped, not leased.
RESERVE: Final = _NOW + _PROMOTE + """
local expiry = now + tonumber(ARGV[1])
local token, prefix, stamp = ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local groups = #KEYS / 4
local out, taken = {}, 0
for i = 0, groups - 1 do
  promote(KEYS[i * 4 + 1], KEYS[i * 4 + 4], now, prefix, stamp)
end
-- One LPOP per job rather than LPOP's count form: that needs Redis 6.2, and inside a
-- script the per-call cost is tiny next to the round trip we save.
for i = 0, groups - 1 do
  while taken < limit do
    local id = redis.call('LPOP', KEYS[i * 4 + 1])
    if not id then break end
    local key = prefix .. id
    local fields = redis.call('HMGET', key, 'data', 'meta', 'qb_redelivered', 'status')
    if not fields[4] or fields[4] == 'queued' then
      taken = taken + 1
      local member = id .. ':' .. token .. '-' .. taken
      redis.call('ZADD', KEYS[i * 4 + 2], expiry, member)
      redis.call('ZADD', KEYS[i * 4 + 3], '+inf', member)
      if fields[1] or fields[4] then
        redis.call('HSET', key, 'status', 'started', 'started_at', stamp, 'qb_lease', member)
      end
      local n = #out
      out[n + 1], out[n + 2], out[n + 3] = i, member, fields[1]
      out[n + 4], out[n + 5] = fields[2], fields[3]
    end
  end
end
return out
"""

# Keeps a job hash for ``ttl`` seconds (forever when ttl is -1) and lists it in an RQ
# registry scored by its expiry, the way RQ's own Finished/FailedJobRegistry do.
_KEEP: Final = """
local function keep(key, registry, id, ttl, score)
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', registry, score, id)
  else
    redis.call('PERSIST', key)
    redis.call('ZADD', registry, '+inf', id)
  end
end
"""

# KEYS: groups of four per delivery: leases, started, finished, job hash.
# ARGV: stamp, result_ttl, then member and id per delivery.
# Acks a batch (a single ack is a batch of one). Returns 1 (acked) or 0 (no longer
# leased) per delivery, in order; a lost lease does not stop the others. The hash is
# finished (or deleted) only while the lease owns it: after a retry sent as a new
# attempt, it holds that attempt, which the ack must leave alone.
ACK: Final = _NOW + _KEEP + _OWNS + """
local stamp, ttl = ARGV[1], tonumber(ARGV[2])
local score = now + math.max(ttl, 0)
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local leases, started, finished, key = KEYS[i * 4 + 1], KEYS[i * 4 + 2], KEYS[i * 4 + 3],
    KEYS[i * 4 + 4]
  local member, id = ARGV[i * 2 + 3], ARGV[i * 2 + 4]
  if redis.call('ZREM', leases, member) == 0 then
    out[i + 1] = 0
  else
    redis.call('ZREM', started, member)
    if not owns(key, member) then
      -- a later attempt (or nothing) is in the hash: leave it
    elseif ttl == 0 then
      redis.call('DEL', key)
    else
      redis.call('HSET', key, 'status', 'finished', 'ended_at', stamp)
      keep(key, finished, id, ttl, score)
    end
    out[i + 1] = 1
  end
end
return out
"""

# KEYS: leases, started, queue, scheduled, job hash.
# ARGV: member, id, not_before ('' = now), then the job hash as field/value pairs
# (its status is set here: ``scheduled`` when not_before is still ahead of the server's clock).
RETRY: Final = _NOW + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[5], unpack(ARGV, 4))
local due = tonumber(ARGV[3])
if due and due > now then
  redis.call('HSET', KEYS[5], 'status', 'scheduled')
  redis.call('ZADD', KEYS[4], due, ARGV[2])
else
  redis.call('HSET', KEYS[5], 'status', 'queued')
  redis.call('RPUSH', KEYS[3], ARGV[2])
end
return 1
"""

# KEYS: the leases key per delivery. ARGV: lease timeout (seconds), then the member per
# delivery. XX: never resurrects a lease that ``recover`` already returned.
TOUCH: Final = _NOW + """
local expiry = now + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', expiry, ARGV[i + 1])
end
return 0
"""

# KEYS: leases, started, failed, job hash.
# ARGV: member, id, exc_info, stamp, failure_ttl, placeholder data, origin.
DEAD_LETTER: Final = _NOW + _KEEP + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], 'status', 'failed', 'ended_at', ARGV[4], 'exc_info', ARGV[3])
-- A job whose hash was missing still gets one RQ can read, so its tools list it.
redis.call('HSETNX', KEYS[4], 'data', ARGV[6])
redis.call('HSETNX', KEYS[4], 'origin', ARGV[7])
redis.call('HSETNX', KEYS[4], 'created_at', ARGV[4])
local ttl = tonumber(ARGV[5])
keep(KEYS[4], KEYS[3], ARGV[2], ttl, now + math.max(ttl, 0))
return 1
"""

# KEYS: groups of four per queue. ARGV: job prefix, RQ timestamp.
# Returns how many jobs moved (expired leases returned to the front, due jobs promoted).
# An expired lease that no longer owns its hash (another copy finished, failed, or
# re-queued the job) is dropped rather than returned; one whose hash is gone returns.
RECOVER: Final = _NOW + _PROMOTE + _OWNS + """
local prefix, stamp = ARGV[1], ARGV[2]
local moved = 0
for i = 0, #KEYS / 4 - 1 do
  local queue, leases, started = KEYS[i * 4 + 1], KEYS[i * 4 + 2], KEYS[i * 4 + 3]
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(expired) do
    redis.call('ZREM', leases, member)
    redis.call('ZREM', started, member)
    local id = string.match(member, '^(.*):[^:]*$')
    if redis.call('EXISTS', prefix .. id) == 0 then
      redis.call('LPUSH', queue, id)
      moved = moved + 1
    elseif owns(prefix .. id, member) then
      redis.call('LPUSH', queue, id)
      redis.call('HSET', prefix .. id, 'status', 'queued', 'qb_redelivered', '1')
      moved = moved + 1
    end
  end
  moved = moved + promote(queue, KEYS[i * 4 + 4], now, prefix, stamp)
end
return moved
"""

# -- worker state (see queuebridge_rq.worker_state) -------------------------------------
# A claim key holds ``running:<owner>`` (expiring with the lease) or ``done`` (expiring
# after the dedup TTL); an expired key is gone, so the next SET NX takes it over.

# KEYS: claim keys. ARGV: 'running:<owner>', lease in ms. Returns 1 claimed, 2 done, 3 busy
# per key, in order.
CLAIM: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 1
  elseif redis.call('GET', key) == 'done' then
    out[i] = 2
  else
    out[i] = 3
  end
end
return out
"""

# KEYS: claim keys. ARGV: 'running:<owner>', lease in ms. Extends only the owner's claims.
RENEW: Final = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 0
"""

# KEYS: claim key. ARGV: 'running:<owner>'. Drops the claim only while the owner holds it.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: workers hash. ARGV: worker name, WorkerInfo JSON, seconds to keep the hash.
# Stamped with the server's clock, so hosts with skewed clocks still agree who is alive.
BEAT: Final = _NOW + """
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.6f', now) .. ' ' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 0
"""
