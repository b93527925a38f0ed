-- GCRA for one key, on the server's clock. The key holds the theoretical arrival time (TAT),
-- in microseconds of the server's clock, as an integer string.
--
-- KEYS[1]  the limited key (prefix included)
-- ARGV[1]  the emission interval: microseconds between two admissions at the steady rate
-- ARGV[2]  the tolerance: the interval times the burst, how far ahead of now the TAT may run
-- ARGV[3]  how many admissions this request takes (0 ..= burst, checked by the client; 0 only
--          asks how many remain)
--
-- Returns {allowed (1 or 0), remaining, retry_after_us, ttl_us}.

-- Before Redis 5 a script that wrote after TIME had to ask for effects replication; from 5 on
-- it is the default (and from 7 the only mode), and this call is a harmless no-op.
if redis.replicate_commands then
  redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = math.max(tonumber(stored) or now, now)
end

local new_tat = tat + n * interval
local allow_at = new_tat - tolerance
if allow_at > now then
  -- Refused: nothing is written, so a refusal never pushes the key's TAT on.
  return {0, 0, allow_at - now, tat - now}
end

-- The key is worth keeping only while its TAT is ahead of now: after that, it reads as a
-- fresh key would. Rounded up to the millisecond, so it never vanishes early.
local ttl = new_tat - now
if n > 0 then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ttl / 1000))
end
return {1, math.floor((now - allow_at) / interval), 0, ttl}
