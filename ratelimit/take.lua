-- take.lua checks every token bucket in KEYS and, only if each has a token,
-- takes one from each. Atomic: Redis runs a script alone.
--
-- KEYS[i]      the hash of bucket i: field s = tokens scaled by the refill
--              period (tokens * refill_us), field t = last update (µs, TIME).
-- ARGV[2i-1]   max tokens of bucket i (burst).
-- ARGV[2i]     refill period of bucket i in µs (empty to full).
--
-- Scaled tokens keep the arithmetic in integers: an empty bucket gains max
-- per µs, is full at max*refill_us, and a token costs refill_us. The caller
-- keeps max*refill_us <= 2^53, so every value is an exact Lua number, and
-- Redis writes a number argument exactly (as an integer in decimal).
--
-- Returns, when allowed, an integer: the whole tokens left in the emptiest
-- bucket after the take. When rejected, an array: {retry_after_us, rejected
-- indices (0-based)...}. A rejected call writes nothing. An allowed one
-- writes each bucket back with a TTL of its time to full, rounded up to ms:
-- an absent bucket is a full one.
--
-- The script runs once per rate-limited call, so it keeps to the Redis
-- commands it needs (TIME once; per bucket HMGET, and when allowed HSET and
-- PEXPIRE) and little else.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5 needs it for TIME; later a no-op.
end

local call = redis.call
local t = call('TIME')
local now = t[1] * 1000000 + t[2]

local n = #KEYS
local level = {}
local wait = -1 -- the longest wait of a rejecting bucket; -1: none rejects

for i = 1, n do
  local max, refill = ARGV[2 * i - 1] + 0, ARGV[2 * i] + 0
  local full = max * refill
  local s = full
  local v = call('HMGET', KEYS[i], 's', 't')
  if v[1] and v[2] then
    local elapsed = now - v[2]
    if elapsed < 0 then
      elapsed = 0
    end
    if elapsed < refill then
      s = v[1] + elapsed * max
      if s > full then
        s = full
      end
    end
  end
  level[i] = s
  if s < refill then
    local w = math.ceil((refill - s) / max)
    if w > wait then
      wait = w
    end
  end
end

if wait >= 0 then
  local reply = {wait}
  for i = 1, n do
    if level[i] < ARGV[2 * i] + 0 then
      reply[#reply + 1] = i - 1
    end
  end
  return reply
end

local remaining = -1
for i = 1, n do
  local max, refill = ARGV[2 * i - 1] + 0, ARGV[2 * i] + 0
  local s = level[i] - refill
  local left = (s - s % refill) / refill
  if remaining < 0 or left < remaining then
    remaining = left
  end
  local ttl = math.ceil((max * refill - s) / max / 1000)
  if ttl < 1 then
    ttl = 1
  end
  call('HSET', KEYS[i], 's', s, 't', now)
  call('PEXPIRE', KEYS[i], ttl)
end
return remaining
