//! The two Lua scripts that keep each topic's offsets, stream and channel in step, and the
//! parsing of their answers.
//!
//! Keys per topic, with the configured prefix: `PREFIX:m:TOPIC` (a hash: `e` the epoch as 8
//! raw bytes, `s` the last offset), `PREFIX:h:TOPIC` (the stream; entry id `OFFSET-0`, fields
//! `m` the whole envelope and `t` the Redis time in ms) and the channel `PREFIX:c:TOPIC`.

use bytes::Bytes;
use redis::Value;

/// Publish: next offset, append to the stream (bounded), publish, atomically.
///
/// KEYS: meta, stream, channel. ARGV: envelope prefix, payload, candidate epoch (8 bytes),
/// history length (0: keep none), history age in ms (0: no age bound), meta TTL in s.
/// Returns `{epoch, offset}`.
pub(super) const PUBLISH: &str = r"
local function u64(n)
  local b = {}
  for i = 8, 1, -1 do
    b[i] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(unpack(b))
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'e', epoch)
  redis.call('DEL', KEYS[2])
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
local message = ARGV[1] .. epoch .. u64(offset) .. ARGV[2]
local maxlen = tonumber(ARGV[4])
if maxlen > 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, offset .. '-0', 'm', message, 't', now)
  local age = tonumber(ARGV[5])
  if age > 0 then
    local cutoff = now - age
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 16)
    for _, entry in ipairs(oldest) do
      if tonumber(entry[2][4]) < cutoff then
        redis.call('XDEL', KEYS[2], entry[1])
      else
        break
      end
    end
    redis.call('PEXPIRE', KEYS[2], age)
  end
end
redis.call('PUBLISH', KEYS[3], message)
return {epoch, offset}
";

/// History: the epoch, the last offset, and the envelopes after `since` still in the stream
/// and younger than the age bound. Creates the epoch when the topic has none, so that a
/// position read before the first publish stays valid.
///
/// KEYS: meta, stream. ARGV: the caller's epoch (8 bytes; anything else skips the read),
/// since, limit (0: only the epoch and offset), candidate epoch, meta TTL in s, age in ms.
/// Returns `{epoch, top, envelope...}`.
pub(super) const HISTORY: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch)
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local top = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local result = {epoch, top}
local since = tonumber(ARGV[2])
if epoch ~= ARGV[1] or since >= top or tonumber(ARGV[3]) == 0 then
  return result
end
local entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+', 'COUNT', ARGV[3])
local cutoff = 0
local age = tonumber(ARGV[6])
if age > 0 then
  local time = redis.call('TIME')
  cutoff = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - age
end
for _, entry in ipairs(entries) do
  if tonumber(entry[2][4]) >= cutoff then
    table.insert(result, entry[2][2])
  end
end
return result
";

/// An epoch as the scripts store it: 8 bytes, big-endian.
pub(super) fn epoch_bytes(epoch: u64) -> [u8; 8] {
    epoch.to_be_bytes()
}

fn epoch_from(value: &Value) -> Option<u64> {
    match value {
        Value::BulkString(bytes) if bytes.len() == 8 => {
            let mut word = [0; 8];
            word.copy_from_slice(bytes);
            Some(u64::from_be_bytes(word)).filter(|&e| e != 0)
        }
        _ => None,
    }
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// `{epoch, offset}` from the publish script.
pub(super) fn parse_published(value: &Value) -> Option<(u64, u64)> {
    match value {
        Value::Array(items) if items.len() == 2 => {
            Some((epoch_from(&items[0])?, integer(&items[1])?))
        }
        _ => None,
    }
}

/// `{epoch, top, envelope...}` from the history script.
pub(super) fn parse_history(value: Value) -> Option<(u64, u64, Vec<Bytes>)> {
    let Value::Array(items) = value else {
        return None;
    };
    let mut items = items.into_iter();
    let epoch = epoch_from(&items.next()?)?;
    let top = integer(&items.next()?)?;
    let mut envelopes = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::BulkString(bytes) => envelopes.push(Bytes::from(bytes)),
            _ => return None,
        }
    }
    Some((epoch, top, envelopes))
}
