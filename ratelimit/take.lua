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
-- keeps max*refill_us <= 2^53, so every value is an exact Lua number.
--
-- Returns {allowed (0|1), retry_after_us, remaining, rejected indices (0-based)...}.
-- A rejected call writes nothing. An allowed one writes each bucket back with
-- a TTL of its time to full, rounded up to ms: an absent bucket is a full one.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5 needs it for TIME; later a no-op.
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local n = #KEYS
local level = {}
local reply = {1, 0, 0}
local remaining = nil

for i = 1, n do
  local max = tonumber(ARGV[2 * i - 1])
  local refill = tonumber(ARGV[2 * i])
  local full = max * refill
  local s = full
  local v = redis.call('HMGET', KEYS[i], 's', 't')
  if v[1] and v[2] then
    local elapsed = now - tonumber(v[2])
    if elapsed < 0 then
      elapsed = 0
    end
    if elapsed < refill then
      s = tonumber(v[1]) + elapsed * max
      if s > full then
        s = full
      end
    end
  end
  level[i] = s
  if s < refill then
    reply[1] = 0
    local wait = math.ceil((refill - s) / max)
    if wait > reply[2] then
      reply[2] = wait
    end
    reply[#reply + 1] = i - 1
  end
end

if reply[1] == 0 then
  return reply
end

for i = 1, n do
  local max = tonumber(ARGV[2 * i - 1])
  local refill = tonumber(ARGV[2 * i])
  local s = level[i] - refill
  local left = (s - math.fmod(s, refill)) / refill
  if remaining == nil or left < remaining then
    remaining = left
  end
  local ttl = math.ceil((max * refill - s) / max / 1000)
  if ttl < 1 then
    ttl = 1
  end
  redis.call('HSET', KEYS[i], 's', string.format('%.0f', s), 't', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[i], ttl)
end
reply[3] = remaining or 0
return reply
