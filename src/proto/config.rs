//! Engine configuration: limits, buffering and timeouts.

use std::num::NonZeroU32;
use std::time::Duration;

/// Which end of the connection this endpoint is.
///
/// Clients mask every frame they send and expect unmasked frames; servers the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The accepting end.
    Server,
    /// The connecting end.
    Client,
}

/// What [`send`](crate::WebSocket::send) does when the write queue is over
/// [`Config::write_buffer_high_water`] because the peer is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait until the peer has read enough. The sending task is held up; other connections
    /// are not.
    #[default]
    Wait,
    /// Refuse the message at once with [`ErrorKind::Backpressure`](crate::ErrorKind::Backpressure),
    /// leaving the connection as it is: for messages that are worthless late (live prices,
    /// positions), which the application may drop or send again.
    Reject,
    /// Close the connection at once (dropping what is queued) and fail the send with
    /// [`ErrorKind::Backpressure`](crate::ErrorKind::Backpressure): for servers that would
    /// rather lose a slow client than hold its data, like uWebSockets' `maxBackpressure`.
    Close,
}

/// Limits, buffering and timeouts for a [`WebSocket`](crate::WebSocket).
///
/// Every limit is on by default, at a value that ordinary applications never reach and that
/// passes the whole Autobahn|Testsuite (whose largest message is 16 MiB). Build one with
/// [`Config::default`] and the by-value setters:
///
/// ```
/// use std::time::Duration;
/// use tower_ws::Config;
///
/// let config = Config::default()
///     .max_message_size(1 << 20)
///     .keepalive(Duration::from_secs(20), Duration::from_secs(10));
/// assert_eq!(config.get_max_message_size(), 1 << 20);
/// ```
///
/// # Ranges
///
/// A `Config` is copied into every connection and kept for its life, so it is stored compactly
/// (48 bytes). The byte limits are kept as 32-bit counts: any value from `u32::MAX` (4 GiB less
/// a byte) up means no limit at all, and its getter then returns `usize::MAX`. Durations are
/// kept in whole milliseconds, rounded up: any duration from `u32::MAX` milliseconds (about 49.7
/// days) up, [`Duration::MAX`] included, counts as that.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    max_message_size: Limit,
    max_frame_size: Limit,
    write_high_water: Limit,
    flush_threshold: Limit,
    read_chunk: u32,
    /// Milliseconds.
    close_timeout: u32,
    keepalive: Option<Keepalive>,
    #[cfg(feature = "deflate")]
    deflate: Option<super::deflate::DeflateConfig>,
    auto_pong: bool,
    backpressure: Backpressure,
}

/// Keepalive settings, in milliseconds: see [`Config::keepalive`]. The interval is at least 1 ms,
/// which keeps `Option<Keepalive>` at 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keepalive {
    interval: NonZeroU32,
    timeout: u32,
}

/// A byte limit in 32 bits: `u32::MAX` means none.
///
/// The checks compare against the stored number first and rule out "no limit" only when that
/// comparison trips, so a check costs what it did on a `usize` (no conversion on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit(u32);

impl Limit {
    /// No limit.
    pub(crate) const NONE: Self = Self(u32::MAX);

    /// `bytes`, or no limit from `u32::MAX` up.
    pub(crate) const fn new(bytes: u64) -> Self {
        if bytes >= u32::MAX as u64 {
            Self::NONE
        } else {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "below u32::MAX, checked just above"
            )]
            Self(bytes as u32)
        }
    }

    fn from_usize(bytes: usize) -> Self {
        Self::new(u64::try_from(bytes).unwrap_or(u64::MAX))
    }

    /// Whether `n` bytes are over the limit.
    #[inline]
    pub(crate) fn exceeded_by(self, n: u64) -> bool {
        if n > u64::from(self.0) {
            self.is_set()
        } else {
            false
        }
    }

    /// Whether `n` bytes are at or over the limit (a mark that `n` reached).
    #[inline]
    pub(crate) fn reached_by(self, n: usize) -> bool {
        if u64::try_from(n).unwrap_or(u64::MAX) >= u64::from(self.0) {
            self.is_set()
        } else {
            false
        }
    }

    /// Whether there is a limit. Out of line: the checks ask only once the count passed the
    /// stored number, which under a limit is rare, so the common path is one comparison.
    #[cold]
    #[inline(never)]
    fn is_set(self) -> bool {
        self != Self::NONE
    }

    /// The limit in bytes, `usize::MAX` for none.
    pub(crate) fn get(self) -> usize {
        if self == Self::NONE {
            usize::MAX
        } else {
            usize::try_from(self.0).unwrap_or(usize::MAX)
        }
    }

    /// The limit in bytes, `u64::MAX` for none (for error reports).
    pub(crate) fn get_u64(self) -> u64 {
        if self == Self::NONE {
            u64::MAX
        } else {
            u64::from(self.0)
        }
    }
}

/// A duration as stored: whole milliseconds, rounded up, at most `u32::MAX`.
fn to_millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

fn from_millis(millis: u32) -> Duration {
    Duration::from_millis(u64::from(millis))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: Limit::new(16 << 20),
            max_frame_size: Limit::new(16 << 20),
            write_high_water: Limit::new(128 << 10),
            flush_threshold: Limit::new(64 << 10),
            read_chunk: 8 << 10,
            auto_pong: true,
            close_timeout: 5_000,
            keepalive: None,
            backpressure: Backpressure::Wait,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// The largest message accepted, in bytes, counted over all its fragments (after
    /// decompression, when compression is negotiated).
    ///
    /// Default: 16 MiB. A message that would exceed it fails the connection with close code
    /// 1009 as soon as a frame header announces it, before its payload is read. Memory for a
    /// message is reserved as its bytes arrive, never from the announced length, so the limit
    /// bounds what a peer can make the endpoint hold for each connection. `u32::MAX` (4 GiB
    /// less a byte) or more, `usize::MAX` included, turns the limit off.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Limit::from_usize(bytes);
        self
    }

    /// The largest frame payload accepted, in bytes.
    ///
    /// Default: 16 MiB. Decided from the frame header alone (close code 1009). `u32::MAX` (4 GiB
    /// less a byte) or more turns the limit off.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = Limit::from_usize(bytes);
        self
    }

    /// How many bytes may wait in the write queue before `send` (and `Sink::poll_ready`)
    /// waits for the peer to read.
    ///
    /// Default: 128 KiB. A message is queued whole, so the queue holds at most this plus one
    /// message; payloads are queued by reference, not copied. Pongs the engine sends on its own
    /// count too: while the queue is over the mark, reading from the transport pauses and only
    /// the latest unanswered ping is kept (RFC 6455 section 5.5.3 allows answering just that
    /// one), so a peer that floods pings without reading the pongs cannot grow the queue.
    /// `u32::MAX` (4 GiB less a byte) or more means no mark: `send` never waits.
    #[must_use]
    pub fn write_buffer_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = Limit::from_usize(bytes);
        self
    }

    /// What `send` does while the write queue is over the high-water mark.
    ///
    /// Default: [`Backpressure::Wait`].
    #[must_use]
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// How many queued bytes make `send` write at once even though more received frames are
    /// already waiting to be read.
    ///
    /// Default: 64 KiB. While complete frames are buffered on the read side, `send` queues its
    /// frame without writing, so a server answering a burst of pipelined messages writes all
    /// the answers in one system call when the burst is consumed; the queue is always written
    /// before the connection waits for more input. `u32::MAX` (4 GiB less a byte) or more means no
    /// threshold: the queue is written only when nothing more is buffered to read.
    #[must_use]
    pub fn flush_threshold(mut self, bytes: usize) -> Self {
        self.flush_threshold = Limit::from_usize(bytes);
        self
    }

    /// How many bytes to ask the transport for when no frame in progress needs more.
    ///
    /// Default: 8 KiB. An idle connection holds no read buffer at all; one is borrowed from a
    /// per-thread pool when data arrives and returned when every received frame has been
    /// consumed. Reads grow up to 256 KiB while a large frame is arriving. Values are clamped
    /// to 1 byte to `u32::MAX` (4 GiB less a byte).
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_chunk = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        self
    }

    /// Whether received pings are answered with a pong automatically.
    ///
    /// Default: on. The pong is queued and written even when the application only reads. Turn
    /// it off to answer pings yourself (each ping is still delivered as a message).
    #[must_use]
    pub fn auto_pong(mut self, enabled: bool) -> Self {
        self.auto_pong = enabled;
        self
    }

    /// How long to wait for the peer's answer to a close frame, and for a server to close the
    /// transport after the close handshake (client role), before closing it ourselves.
    ///
    /// Default: 5 seconds. Kept in whole milliseconds, rounded up (so a timeout under a
    /// millisecond is one millisecond, and [`get_close_timeout`](Self::get_close_timeout)
    /// returns the rounded value); at most `u32::MAX` milliseconds (about 49.7 days): a longer
    /// timeout, [`Duration::MAX`] included, is that.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = to_millis(timeout);
        self
    }

    /// Sends a ping after `interval` in which nothing arrived from the peer, and fails the
    /// connection (error kind [`Timeout`](crate::ErrorKind::Timeout), close code 1001) when
    /// nothing at all arrives for `interval + timeout`.
    ///
    /// "Nothing arrived" counts bytes, not whole frames, so a large message on a slow link keeps
    /// the connection alive while it trickles in; the price is that a peer trickling a byte per
    /// interval into a frame is not cut off (it holds the bytes it sent, at most the frame
    /// limit). Default: off. Detection runs while the connection is being read (a `recv` or
    /// stream poll is pending), which is how handlers normally spend their time; a handler that
    /// only sends notices a dead peer when the transport reports it.
    ///
    /// Both durations are kept in whole milliseconds, rounded up (the interval is at least one
    /// millisecond), and at most `u32::MAX` milliseconds (about 49.7 days): a longer one,
    /// [`Duration::MAX`] included, is that.
    #[must_use]
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive {
            interval: NonZeroU32::new(to_millis(interval)).unwrap_or(NonZeroU32::MIN),
            timeout: to_millis(timeout),
        });
        self
    }

    /// Offers or accepts permessage-deflate (RFC 7692) with these settings.
    ///
    /// Default: off. The tower layer and the client negotiate it in the handshake; a connection
    /// compresses only if both sides agreed. See [`DeflateConfig`](crate::DeflateConfig) for
    /// the memory each setting costs.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    #[must_use]
    pub fn deflate(mut self, deflate: super::deflate::DeflateConfig) -> Self {
        self.deflate = Some(deflate);
        self
    }

    /// The permessage-deflate settings, if compression is offered or accepted.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn get_deflate(&self) -> Option<&super::deflate::DeflateConfig> {
        self.deflate.as_ref()
    }

    /// The configured message size limit (`usize::MAX`: no limit).
    #[inline]
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size.get()
    }

    /// The configured frame size limit (`usize::MAX`: no limit).
    #[inline]
    pub fn get_max_frame_size(&self) -> usize {
        self.max_frame_size.get()
    }

    /// The configured write-queue high-water mark (`usize::MAX`: none).
    #[inline]
    pub fn get_write_buffer_high_water(&self) -> usize {
        self.write_high_water.get()
    }

    /// The configured close timeout, in whole milliseconds (see
    /// [`close_timeout`](Self::close_timeout)).
    #[inline]
    pub fn get_close_timeout(&self) -> Duration {
        from_millis(self.close_timeout)
    }

    /// The message size limit, for the engine.
    #[inline]
    pub(crate) fn message_limit(&self) -> Limit {
        self.max_message_size
    }

    /// The frame size limit, for the engine.
    #[inline]
    pub(crate) fn frame_limit(&self) -> Limit {
        self.max_frame_size
    }

    /// The write queue's high-water mark, for the engine.
    #[inline]
    pub(crate) fn high_water(&self) -> Limit {
        self.write_high_water
    }

    /// Whether `queued` bytes reach the write queue's high-water mark.
    #[inline]
    pub(crate) fn over_high_water(&self, queued: usize) -> bool {
        self.write_high_water.reached_by(queued)
    }

    /// Whether `queued` bytes reach the flush threshold.
    #[inline]
    pub(crate) fn flush_due(&self, queued: usize) -> bool {
        self.flush_threshold.reached_by(queued)
    }

    /// The flush threshold (`usize::MAX`: none).
    #[cfg(test)]
    fn flush_at(&self) -> usize {
        self.flush_threshold.get()
    }

    /// The read size, for the engine.
    #[inline]
    pub(crate) fn read_chunk(&self) -> usize {
        usize::try_from(self.read_chunk).unwrap_or(usize::MAX)
    }

    /// Whether pings are answered by the engine.
    #[inline]
    pub(crate) fn answers_pings(&self) -> bool {
        self.auto_pong
    }

    /// The backpressure policy, for the engine.
    #[inline]
    pub(crate) fn backpressure_policy(&self) -> Backpressure {
        self.backpressure
    }

    /// The keepalive interval and timeout, if keepalive is on.
    pub(crate) fn keepalive_timing(&self) -> Option<(Duration, Duration)> {
        self.keepalive
            .map(|k| (from_millis(k.interval.get()), from_millis(k.timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_is_small_because_every_connection_keeps_one() {
        assert!(size_of::<Config>() <= 48, "{} bytes", size_of::<Config>());
        assert_eq!(size_of::<Option<Keepalive>>(), 8);
    }

    #[test]
    fn limits_from_u32_max_up_mean_no_limit_and_smaller_ones_are_kept_exactly() {
        let max = usize::try_from(u32::MAX).unwrap();
        for unlimited in [max, max.saturating_add(1), usize::MAX] {
            let config = Config::default()
                .max_message_size(unlimited)
                .max_frame_size(unlimited)
                .write_buffer_high_water(unlimited)
                .flush_threshold(unlimited);
            assert_eq!(config.get_max_message_size(), usize::MAX);
            assert_eq!(config.get_max_frame_size(), usize::MAX);
            assert_eq!(config.get_write_buffer_high_water(), usize::MAX);
            assert_eq!(config.flush_at(), usize::MAX);
        }
        for kept in [0, 1, 1 << 20, max - 1] {
            let config = Config::default()
                .max_message_size(kept)
                .max_frame_size(kept)
                .write_buffer_high_water(kept)
                .flush_threshold(kept);
            assert_eq!(config.get_max_message_size(), kept);
            assert_eq!(config.get_max_frame_size(), kept);
            assert_eq!(config.get_write_buffer_high_water(), kept);
            assert_eq!(config.flush_at(), kept);
        }
        let defaults = Config::default();
        assert_eq!(defaults.get_max_message_size(), 16 << 20);
        assert_eq!(defaults.get_max_frame_size(), 16 << 20);
        assert_eq!(defaults.get_write_buffer_high_water(), 128 << 10);
        assert_eq!(defaults.flush_at(), 64 << 10);
        assert_eq!(defaults.read_chunk(), 8 << 10);
    }

    #[test]
    fn the_read_size_is_clamped_to_one_byte_and_u32_max() {
        assert_eq!(Config::default().read_buffer_size(0).read_chunk(), 1);
        assert_eq!(Config::default().read_buffer_size(4096).read_chunk(), 4096);
        assert_eq!(
            Config::default().read_buffer_size(usize::MAX).read_chunk(),
            usize::try_from(u32::MAX).unwrap()
        );
    }

    #[test]
    fn durations_are_whole_milliseconds_rounded_up_and_at_most_u32_max_of_them() {
        let longest = Duration::from_millis(u64::from(u32::MAX));
        let cases = [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_nanos(1), Duration::from_millis(1)),
            (Duration::from_micros(1500), Duration::from_millis(2)),
            (Duration::from_secs(5), Duration::from_secs(5)),
            (longest, longest),
            (longest + Duration::from_nanos(1), longest),
            (Duration::from_secs(u64::MAX), longest),
            (Duration::MAX, longest),
        ];
        for (set, stored) in cases {
            assert_eq!(
                Config::default().close_timeout(set).get_close_timeout(),
                stored
            );
            let keepalive = Config::default().keepalive(set, set).keepalive_timing();
            // The interval is at least a millisecond; the timeout may be zero.
            let interval = stored.max(Duration::from_millis(1));
            assert_eq!(keepalive, Some((interval, stored)), "{set:?}");
        }
        assert_eq!(
            Config::default().get_close_timeout(),
            Duration::from_secs(5)
        );
        assert_eq!(Config::default().keepalive_timing(), None);
    }
}
