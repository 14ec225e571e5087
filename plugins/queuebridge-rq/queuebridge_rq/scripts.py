"""Lua scripts: each lease transition is one atomic step inside Redis.

A job id is always in exactly one place: the queue list, the scheduled registry,
or a lease (``leases`` + RQ's ``wip`` registry, same member ``<id>:<token>``).
Scripts move it between places atomically, so a job is never in neither place and
never handed out twice, whatever runs concurrently (other workers, ``recover``).

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
           "RETRY", "TOUCH"]

# Sets ``now`` (seconds, float) from the server's clock. Comes first in every script that
# reads the clock: Redis < 5 replicates scripts verbatim and refuses writes after TIME
# unless the script asked, before writing, for its effects to be replicated (what
# Redis >= 5 always does; the call is a no-op there).
_NOW: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# Moves up to 100 due jobs per queue from the scheduled registry to the queue.
_PROMOTE: Final = """
local function promote(queue, scheduled, now, prefix, stamp)
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', scheduled, id)
    redis.call('RPUSH', queue, id)
    if redis.call('EXISTS', prefix .. id) == 1 then
      redis.call('HSET', prefix .. id, 'status', 'queued', 'enqueued_at', stamp)
    end
  end
  return #due
end
"""

# ARGV: lease timeout (seconds), token, job prefix, RQ timestamp, limit.
# Leases up to ``limit`` jobs, draining queues in priority order. Returns a flat array,
# five entries per job: queue index, member, data, meta, redelivered (empty: none due).
# Members are ``<id>:<token>-<n>``: unique even when one id sits twice in a queue.
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
    taken = taken + 1
    local member = id .. ':' .. token .. '-' .. taken
    redis.call('ZADD', KEYS[i * 4 + 2], expiry, member)
    redis.call('ZADD', KEYS[i * 4 + 3], '+inf', member)
    local key = prefix .. id
    local fields = redis.call('HMGET', key, 'data', 'meta', 'qb_redelivered')
    if fields[1] then
      redis.call('HSET', key, 'status', 'started', 'started_at', stamp)
    end
    local n = #out
    out[n + 1], out[n + 2], out[n + 3] = i, member, fields[1]
    out[n + 4], out[n + 5] = fields[2], fields[3]
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
# leased) per delivery, in order; a lost lease does not stop the others.
ACK: Final = _NOW + _KEEP + """
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
    if ttl == 0 then
      redis.call('DEL', key)
    elseif redis.call('EXISTS', key) == 1 then
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
RECOVER: Final = _NOW + _PROMOTE + """
local prefix, stamp = ARGV[1], ARGV[2]
local moved = 0
for i = 0, #KEYS / 4 - 1 do
  local queue, leases, started = KEYS[i * 4 + 1], KEYS[i * 4 + 2], KEYS[i * 4 + 3]
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(expired) do
    redis.call('ZREM', leases, member)
    redis.call('ZREM', started, member)
    local id = string.match(member, '^(.*):[^:]*$')
    redis.call('LPUSH', queue, id)
    if redis.call('EXISTS', prefix .. id) == 1 then
      redis.call('HSET', prefix .. id, 'status', 'queued', 'qb_redelivered', '1')
    end
    moved = moved + 1
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
