//! Lua scripts: each runs atomically on the server, so a message is never both in two
//! places nor in none. Where a script moves a message it writes the new copy before it
//! removes the old one, because Redis does not roll back a script that fails half-way
//! (an out-of-memory `XADD`, say): a failure then leaves the message where it was.
//!
//! Times come from the server's `TIME`, so sidecars with skewed clocks agree on when a
//! delayed message is due.

use redis::Script;

/// Current server time in ms, as a string Redis reads as an exact integer score.
const NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `XACK` + `XDEL`. KEYS: stream. ARGV: group, id. Returns 1, or 0 if the entry was not
/// pending (already acked).
pub(crate) fn ack() -> Script {
    Script::new(
        r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
",
    )
}

/// Moves a pending entry to the end of a stream (requeue: the same stream; dead letter:
/// the DLQ). KEYS: source stream, target stream. ARGV: group, id, body, prior deliveries
/// (`''`: none), dead-lettered-from (`''`: none). Returns 1, or 0 if the entry was not
/// pending.
pub(crate) fn move_entry() -> Script {
    Script::new(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then return 0 end
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'body', ARGV[3], 'deliveries', ARGV[4])
elseif ARGV[5] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'body', ARGV[3], 'dead-lettered-from', ARGV[5])
else
  redis.call('XADD', KEYS[2], '*', 'body', ARGV[3])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
",
    )
}

/// Adds a member to the delayed set, due `delay` ms from now, and, for a nack, removes
/// the pending entry it replaces. KEYS: delayed set, stream. ARGV: delay ms, member,
/// group, id (`''` for a fresh send). Returns 1, or 0 if the entry was not pending.
pub(crate) fn delay() -> Script {
    Script::new(&format!(
        r"
if ARGV[4] ~= '' then
  local p = redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[4], ARGV[4], 1)
  if #p == 0 then return 0 end
end
{NOW_MS}
-- +1: `now` is rounded down, and the mover moves members scored at or before its `now`.
local due = now + tonumber(ARGV[1]) + 1
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[2])
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
  redis.call('XDEL', KEYS[2], ARGV[4])
end
return 1
"
    ))
}

/// The delayed mover: pops due members (`{uuid}:{body}` or `{uuid}#{n}:{body}`,
/// see `encode_member`) and appends their bodies to the stream. KEYS: delayed set,
/// stream. ARGV: most members to move. Returns how many it moved.
pub(crate) fn mover() -> Script {
    Script::new(&format!(
        r"
{NOW_MS}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now), 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  local body = m
  local prior = nil
  local sep = string.find(m, ':', 1, true)
  if sep then
    body = string.sub(m, sep + 1)
    local head = string.sub(m, 1, sep - 1)
    local hash = string.find(head, '#', 1, true)
    if hash then prior = string.sub(head, hash + 1) end
  end
  if prior then
    redis.call('XADD', KEYS[2], '*', 'body', body, 'deliveries', prior)
  else
    redis.call('XADD', KEYS[2], '*', 'body', body)
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
"
    ))
}

/// Claims entries idle longer than the visibility timeout (`XAUTOCLAIM`) with their
/// delivery counts. KEYS: stream. ARGV: group, consumer, min idle ms, start cursor,
/// count. Returns `{next cursor, {{id, {field, value...}, times delivered}...}}`.
pub(crate) fn reclaim() -> Script {
    Script::new(
        r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local times = 1
    if p[1] then times = p[1][4] end
    out[#out + 1] = {e[1], e[2], times}
  end
end
return {r[1], out}
",
    )
}

/// Keeps a pending entry of this consumer from being reclaimed: resets its idle time
/// (`XCLAIM … JUSTID` to itself, which leaves the delivery counter alone). KEYS: stream.
/// ARGV: group, consumer, id. Returns 1, or 0 if the entry is not pending for this
/// consumer (acked, or reclaimed by another after its window passed).
pub(crate) fn touch() -> Script {
    Script::new(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
",
    )
}

/// Queue depth. KEYS: stream, delayed set. ARGV: group. Returns `{ready, delayed,
/// in flight}`; due members the mover has not moved yet count as ready.
pub(crate) fn depth() -> Script {
    Script::new(&format!(
        r"
{NOW_MS}
local nowstr = string.format('%.0f', now)
local len = redis.call('XLEN', KEYS[1])
local pending = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and p.err == nil then pending = p[1] end
local due = redis.call('ZCOUNT', KEYS[2], '-inf', nowstr)
local later = redis.call('ZCOUNT', KEYS[2], '(' .. nowstr, '+inf')
local ready = len - pending
if ready < 0 then ready = 0 end
return {{ready + due, later, pending}}
"
    ))
}
