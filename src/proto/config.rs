//! Engine configuration: limits, buffering and timeouts.

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
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) write_high_water: usize,
    pub(crate) flush_threshold: usize,
    pub(crate) read_chunk: usize,
    pub(crate) auto_pong: bool,
    pub(crate) close_timeout: Duration,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) backpressure: Backpressure,
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<super::deflate::DeflateConfig>,
}

/// Keepalive settings: see [`Config::keepalive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            write_high_water: 128 << 10,
            flush_threshold: 64 << 10,
            read_chunk: 8 << 10,
            auto_pong: true,
            close_timeout: Duration::from_secs(5),
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
    /// bounds what a peer can make the endpoint hold for each connection. `usize::MAX` turns
    /// the limit off.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The largest frame payload accepted, in bytes.
    ///
    /// Default: 16 MiB. Decided from the frame header alone (close code 1009).
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
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
    #[must_use]
    pub fn write_buffer_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes;
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
    /// before the connection waits for more input.
    #[must_use]
    pub fn flush_threshold(mut self, bytes: usize) -> Self {
        self.flush_threshold = bytes;
        self
    }

    /// How many bytes to ask the transport for when no frame in progress needs more.
    ///
    /// Default: 8 KiB. An idle connection holds no read buffer at all; one is borrowed from a
    /// per-thread pool when data arrives and returned when every received frame has been
    /// consumed. Reads grow up to 256 KiB while a large frame is arriving.
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes.max(1);
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
    /// Default: 5 seconds.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
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
    #[must_use]
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive { interval, timeout });
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

    /// The configured message size limit.
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The configured frame size limit.
    pub fn get_max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// The configured write-queue high-water mark.
    pub fn get_write_buffer_high_water(&self) -> usize {
        self.write_high_water
    }

    /// The configured close timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }
}
