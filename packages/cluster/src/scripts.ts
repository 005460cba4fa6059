// The cluster's Redis scripts. Each runs atomically, so that no two nodes ever read, decide and
// write the same presence in between each other: a dead node is reaped once, an `offline` event
// is published once. Times are Redis's own (TIME), so that the nodes' clocks do not matter.
//
// Keys (all under one hash tag, `{prefix}`, so that they live in one slot of a Redis Cluster):
//   {p}:nodes             ZSET  node id → lease deadline (ms, Redis time)
//   {p}:node:<id>         HASH  the node's info (name, host, pid, startedAt), epoch, renewedAt, latest snapshot
//   {p}:node:<id>:keys    HASH  presence key → connections holding it on that node
//   {p}:presence          HASH  presence key → connections holding it in the cluster
//   {p}:grace             ZSET  presence key → when its `offline` event is due (the grace)
//   {p}:clock             STRING the latest tick's time: a longer silence was Redis's stall, not the nodes'
// Channel: {p}:events, messages `online <key>` and `offline <key>`.

/** Redis time in ms, as every script reads it. */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Takes `count` connections of `key` off the cluster's total: when none is left, its `offline`
 * is published now (grace 0) or scheduled for the end of the grace.
 */
const DROP = `
local function drop(key, count, grace)
  local total = redis.call('HINCRBY', KEYS[2], key, -count)
  if total <= 0 then
    redis.call('HDEL', KEYS[2], key)
    if grace > 0 then
      redis.call('ZADD', KEYS[3], now + grace, key)
    else
      redis.call('ZREM', KEYS[3], key)
      redis.call('PUBLISH', KEYS[4], 'offline ' .. key)
    end
  end
end`;

/** Ends a node: its keys leave the cluster's totals, its own keys are deleted, its lease removed. */
const END_NODE = `
local function endNode(id, grace)
  local nodeKeys = ARGV[1] .. ':node:' .. id .. ':keys'
  local held = redis.call('HGETALL', nodeKeys)
  for i = 1, #held, 2 do drop(held[i], tonumber(held[i + 1]), grace) end
  redis.call('DEL', nodeKeys, ARGV[1] .. ':node:' .. id)
  redis.call('ZREM', KEYS[1], id)
end`;

/**
 * KEYS: nodes, presence, grace, events, node info, node keys. ARGV: prefix, id, lease ms, grace ms,
 * epoch, n, then n pairs (key, connections on this node), then info fields (name, value, ...).
 * (Re)registers the node with what it holds now: the lease is taken or renewed, and the node's
 * keys are set to the pairs, each difference applied to the cluster's totals (with its online or
 * offline event) in the same step. Used at start, after Redis came back, and after a lost lease.
 * `epoch` counts the node's registrations: one older than the stored one is a stale command (sent
 * on a connection the node gave up, and run late) and changes nothing (returns -1).
 */
export const REGISTER = `${NOW}${DROP}
local epoch = tonumber(ARGV[5])
if (tonumber(redis.call('HGET', KEYS[5], 'epoch')) or 0) > epoch then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
local grace, n = tonumber(ARGV[4]), tonumber(ARGV[6])
local old = {}
local flat = redis.call('HGETALL', KEYS[6])
for i = 1, #flat, 2 do old[flat[i]] = tonumber(flat[i + 1]) end
redis.call('DEL', KEYS[6])
for i = 0, n - 1 do
  local key, count = ARGV[7 + 2 * i], tonumber(ARGV[8 + 2 * i])
  redis.call('HSET', KEYS[6], key, count)
  local delta = count - (old[key] or 0)
  old[key] = nil
  if delta < 0 then
    drop(key, -delta, grace)
  elseif delta > 0 then
    local total = redis.call('HINCRBY', KEYS[2], key, delta)
    if total == delta and redis.call('ZREM', KEYS[3], key) == 0 then redis.call('PUBLISH', KEYS[4], 'online ' .. key) end
  end
end
for key, count in pairs(old) do drop(key, count, grace) end
local info = 7 + 2 * n
redis.call('HSET', KEYS[5], 'renewedAt', now, 'epoch', epoch)
if #ARGV >= info then redis.call('HSET', KEYS[5], unpack(ARGV, info)) end
return now`;

/**
 * KEYS: nodes, presence, grace, events, node info. ARGV: prefix, id, lease ms, snapshot, grace ms,
 * interval ms.
 * Renews the lease (0 when it is gone: the node must register again), stores the snapshot,
 * reaps the nodes whose lease ran out (their ids are returned) and publishes the `offline` events
 * whose grace ended.
 * When no node ticked for longer than an interval (the `clock` key: the latest tick's time), Redis
 * itself was stalled (DEBUG SLEEP, CLIENT PAUSE, a slow fork) or every node was: that time does not
 * count against anyone's lease, so every lease is moved on by it before any is judged. A healthy
 * node is never reaped because Redis could not hear it.
 */
export const TICK = `${NOW}${DROP}${END_NODE}
local clock = ARGV[1] .. ':clock'
local last = tonumber(redis.call('GET', clock))
local stalled = last and now - last - tonumber(ARGV[6]) or 0
if stalled > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do redis.call('ZINCRBY', KEYS[1], stalled, id) end
end
redis.call('SET', clock, now)
local renewed = 0
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[2])
  redis.call('HSET', KEYS[5], 'snapshot', ARGV[4], 'renewedAt', now)
  renewed = 1
end
local grace = tonumber(ARGV[5])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
for _, id in ipairs(dead) do endNode(id, grace) end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
for _, key in ipairs(due) do
  redis.call('ZREM', KEYS[3], key)
  if redis.call('HEXISTS', KEYS[2], key) == 0 then redis.call('PUBLISH', KEYS[4], 'offline ' .. key) end
end
return { renewed, dead }`;

/**
 * KEYS: nodes, presence, grace, events, node info, node keys. ARGV: prefix, key, delta, grace ms,
 * epoch.
 * Returns -1, changing nothing, unless the node is registered with this `epoch`: without a lease
 * (it was reaped, or Redis lost its data) the node must register again with everything it holds,
 * and a change of an older epoch is a stale command that the latest registration already counted.
 * Adds `delta` connections (negative: removes) holding `key` on one node. A key that comes
 * online is announced, unless its `offline` was still in its grace (a reconnect): then neither
 * event is published.
 */
export const CHANGE = `${NOW}${DROP}
if redis.call('HGET', KEYS[5], 'epoch') ~= ARGV[5] then return -1 end
local key, delta = ARGV[2], tonumber(ARGV[3])
local onNode = redis.call('HINCRBY', KEYS[6], key, delta)
if onNode <= 0 then redis.call('HDEL', KEYS[6], key) end
if delta < 0 then
  drop(key, -delta, tonumber(ARGV[4]))
  return 0
end
local total = redis.call('HINCRBY', KEYS[2], key, delta)
if total == delta and redis.call('ZREM', KEYS[3], key) == 0 then
  redis.call('PUBLISH', KEYS[4], 'online ' .. key)
end
return total`;

/** KEYS: nodes, presence, grace, events. ARGV: prefix, id. Ends the node at once: `offline` now, no grace. The last node out removes the clock. */
export const LEAVE = `${NOW}${DROP}${END_NODE}
endNode(ARGV[2], 0)
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', ARGV[1] .. ':clock') end
return 1`;

/**
 * KEYS: nodes, presence, grace, events. ARGV: prefix. Reads, changes nothing. Returns Redis's time,
 * the number of online keys, then for each live node (lease not run out): id, name, host, pid,
 * startedAt, renewedAt, snapshot. O(nodes), never O(connections).
 */
export const STATS = `${NOW}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = { now, redis.call('HLEN', KEYS[2]) }
for _, id in ipairs(live) do
  local info = redis.call('HMGET', ARGV[1] .. ':node:' .. id, 'name', 'host', 'pid', 'startedAt', 'renewedAt', 'snapshot')
  out[#out + 1] = id
  for i = 1, 6 do out[#out + 1] = info[i] end
end
return out`;
