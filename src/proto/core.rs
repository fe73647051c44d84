//! The connection state machine shared by [`WebSocket`](super::WebSocket) and its split halves:
//! reading events, answering control frames, the close handshake, failing the connection, and
//! the write queue's backpressure.

use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use super::closer::CloseSignal;
use super::config::{Backpressure, Config, Role};
use super::deflate::Codec;
use super::fanout::{self, Inbox};
use super::frame::{HeaderRules, MAX_CONTROL_PAYLOAD, OpCode};
use super::message::{Frame, Message};
use super::read::{self, Event, Reader};
use super::utf8::Utf8Validator;
use super::write::WriteQueue;
use crate::error::{Error, Result};

/// Where the connection is in its life.
#[derive(Debug)]
enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and are waiting for the peer's. Received messages are still
    /// delivered; nothing more can be sent.
    CloseSent,
    /// Both close frames have been exchanged: flush, then close the transport (server) or wait
    /// for the server to close it (client).
    Closing,
    /// We failed the connection: flush the close frame, close the transport, report the error.
    Failed(Option<Error>),
    /// Nothing more will be read or written.
    Terminated,
}

/// Which half of a split connection is polling, so the right task is woken when the transport
/// becomes writable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Read,
    Write,
}

/// Wakers of both halves of a split connection, woken together when the transport is writable:
/// both halves write (the reader its pongs and close replies), but a transport keeps only one
/// waker per direction.
#[derive(Debug, Default)]
pub(crate) struct SharedWaker {
    read: std::sync::Mutex<Option<Waker>>,
    write: std::sync::Mutex<Option<Waker>>,
}

impl SharedWaker {
    fn register(&self, side: Side, waker: &Waker) {
        let slot = match side {
            Side::Read => &self.read,
            Side::Write => &self.write,
        };
        let mut slot = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl std::task::Wake for SharedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            let waker = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Keepalive bookkeeping.
#[derive(Debug)]
struct KeepaliveState {
    interval: Duration,
    timeout: Duration,
    last_seen: Instant,
    pinged: bool,
}

/// Masking keys for the client role: `SipHash` (keyed from the OS's randomness by `std`) over a
/// counter, so keys cannot be predicted from earlier ones (RFC 6455 section 10.3).
#[derive(Debug)]
struct MaskKeys {
    hasher: std::hash::RandomState,
    counter: u64,
}

impl MaskKeys {
    fn next(&mut self) -> [u8; 4] {
        self.counter = self.counter.wrapping_add(1);
        let [a, b, c, d, ..] = self.hasher.hash_one(self.counter).to_le_bytes();
        [a, b, c, d]
    }
}

/// A hook run when the connection is dropped while still open: lets the tower layer take the
/// connection back and finish the close handshake for a handler that returned without closing.
pub(crate) type ParkFn<Io> = fn(&mut Core<Io>);

/// The engine's per-connection state.
#[derive(Debug)]
pub(crate) struct Core<Io> {
    pub(crate) io: Io,
    role: Role,
    config: Config,
    reader: Reader,
    writer: WriteQueue,
    state: State,
    /// The close or keepalive deadline; allocated only while one is running.
    timer: Option<Pin<Box<Sleep>>>,
    keepalive: Option<Box<KeepaliveState>>,
    mask_keys: Option<Box<MaskKeys>>,
    signal: Option<Arc<CloseSignal>>,
    /// The waker last registered with `signal`.
    signal_waker: Option<Waker>,
    /// The latest ping's payload, held while the write queue is over its high-water mark: RFC
    /// 6455 section 5.5.3 lets an endpoint answer only the most recent of unanswered pings, so a
    /// ping flood from a peer that does not read costs one pong, not a growing queue. Boxed,
    /// like the other rarely used parts: the connection's state is paid per idle socket.
    deferred_pong: Option<Box<Bytes>>,
    /// A message being sent in pieces with `send_frame`.
    sending_pieces: Option<Pieces>,
    /// permessage-deflate, when negotiated (never without the `deflate` feature).
    deflate: Option<Box<Codec>>,
    /// Set when the connection is split: both halves' wakers.
    shared_waker: Option<Box<(Arc<SharedWaker>, Waker)>>,
    park: Option<ParkFn<Io>>,
    /// Frames published to this socket's topics (see [`fanout`]); none until it joins a hub.
    inbox: Option<Arc<Inbox>>,
}

impl<Io> Drop for Core<Io> {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            inbox.shut();
        }
        if let Some(park) = self.park.take() {
            park(self);
        }
    }
}

impl<Io> Core<Io> {
    pub(crate) fn new(io: Io, role: Role, config: Config, buffered: BytesMut) -> Self {
        let keepalive = config.keepalive_timing().map(|(interval, timeout)| {
            Box::new(KeepaliveState {
                interval,
                timeout,
                last_seen: Instant::now(),
                pinged: false,
            })
        });
        let mask_keys = (role == Role::Client).then(|| {
            Box::new(MaskKeys {
                hasher: std::hash::RandomState::new(),
                counter: 0,
            })
        });
        Self {
            io,
            role,
            config,
            reader: Reader::with_buffered(buffered),
            writer: WriteQueue::default(),
            state: State::Open,
            timer: None,
            keepalive,
            mask_keys,
            signal: None,
            signal_waker: None,
            deferred_pong: None,
            sending_pieces: None,
            deflate: None,
            shared_waker: None,
            park: None,
            inbox: None,
        }
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Turns on permessage-deflate with the parameters a handshake agreed on. Compression
    /// settings (level, threshold) come from the connection's [`Config::deflate`], or the
    /// defaults.
    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(&mut self, params: super::deflate::DeflateParams) {
        let settings = self.config.get_deflate().copied().unwrap_or_default();
        self.deflate = Some(Box::new(Codec::new(settings, params, self.role)));
    }

    /// What the reader accepts. Made for each read rather than stored: an idle socket holds
    /// its fields (role, frame size limit, compression) once.
    #[inline]
    fn header_rules(&self) -> HeaderRules {
        #[cfg(feature = "deflate")]
        let allowed_rsv = if self.deflate.is_some() {
            super::frame::RSV1
        } else {
            0
        };
        #[cfg(not(feature = "deflate"))]
        let allowed_rsv = 0;
        HeaderRules {
            expect_masked: self.role == Role::Server,
            allowed_rsv,
            max_frame_size: self.config.frame_limit(),
        }
    }

    pub(crate) fn set_park(&mut self, park: ParkFn<Io>) {
        self.park = Some(park);
    }

    /// Whether the application can still send (no close frame sent or received).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether the connection is finished: nothing more will be read or written.
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// Bytes queued for writing.
    pub(crate) fn queued(&self) -> usize {
        self.writer.len()
    }

    /// The close signal, created on first use.
    pub(crate) fn signal(&mut self) -> Arc<CloseSignal> {
        self.signal.get_or_insert_with(Default::default).clone()
    }

    /// Prepares the core to be driven from two tasks.
    pub(crate) fn enable_shared_waker(&mut self) {
        let shared = Arc::new(SharedWaker::default());
        let waker = Waker::from(shared.clone());
        self.shared_waker = Some(Box::new((shared, waker)));
    }

    /// Moves the connection out of `self` (leaving `placeholder` as its transport), if it is
    /// still open or waiting for the peer's close. Used by park hooks.
    pub(crate) fn detach(&mut self, placeholder: Io) -> Option<Core<Io>> {
        if !matches!(self.state, State::Open | State::CloseSent) {
            return None;
        }
        let state = std::mem::replace(&mut self.state, State::Terminated);
        Some(Core {
            io: std::mem::replace(&mut self.io, placeholder),
            role: self.role,
            config: self.config,
            reader: std::mem::take(&mut self.reader),
            writer: std::mem::take(&mut self.writer),
            state,
            timer: self.timer.take(),
            keepalive: self.keepalive.take(),
            mask_keys: self.mask_keys.take(),
            signal: self.signal.take(),
            signal_waker: None,
            deferred_pong: self.deferred_pong.take(),
            sending_pieces: self.sending_pieces.take(),
            deflate: self.deflate.take(),
            shared_waker: None,
            park: None,
            inbox: None,
        })
    }

    fn mask(&mut self) -> Option<[u8; 4]> {
        self.mask_keys.as_mut().map(|k| k.next())
    }

    fn queue(&mut self, opcode: OpCode, payload: Bytes) {
        let mask = self.mask();
        self.writer.push(opcode, true, 0, payload, mask);
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let payload = match frame {
            Some(frame) => {
                let mut buf = BytesMut::with_capacity(frame.encoded_len());
                frame.encode(&mut buf);
                buf.freeze()
            }
            None => Bytes::new(),
        };
        self.queue(OpCode::Close, payload);
    }

    /// Starts or restarts the deadline timer.
    fn arm(&mut self, after: Duration) {
        let deadline = Instant::now() + after;
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// Whether the deadline has passed (registering for a wake-up if not).
    fn timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    /// Sends our close frame and waits for the peer's.
    fn begin_close(&mut self, frame: Option<&CloseFrame>) {
        tracing::debug!(
            code = frame.map(|f| f.code.as_u16()),
            reason = frame.map(|f| f.reason.as_str()),
            "websocket close sent"
        );
        self.queue_close(frame);
        self.state = State::CloseSent;
        self.arm(self.config.get_close_timeout());
    }

    /// Fails the connection: queue a close frame with the error's code (if we have not sent one)
    /// and stop reading.
    fn fail(&mut self, error: Error) {
        tracing::debug!(error = %error, "websocket connection failed");
        if matches!(self.state, State::Open)
            && let Some(code) = error.close_code()
        {
            let mut reason = error
                .protocol_error()
                .map(|r| r.to_string())
                .unwrap_or_default();
            truncate_to_char_boundary(&mut reason, MAX_REASON_LEN);
            self.queue_close(Some(&CloseFrame::new(code, reason)));
        }
        self.reader.discard();
        self.state = State::Failed(Some(error));
        self.arm(self.config.get_close_timeout());
    }

    /// A close request from a [`Closer`](super::Closer), if one is pending and we are open.
    #[inline]
    fn take_close_request(&mut self) -> Option<CloseFrame> {
        let signal = self.signal.as_ref()?;
        if !signal.is_requested() || !matches!(self.state, State::Open) {
            return None;
        }
        signal.take_request()
    }

    // ----- fan-out (see `fanout`) -----------------------------------------------------------

    /// This socket's inbox for published frames, created on first use.
    pub(crate) fn inbox(&mut self, limit: usize, policy: fanout::SlowPolicy) -> Arc<Inbox> {
        if let Some(inbox) = &self.inbox {
            return inbox.clone();
        }
        let inbox = Arc::new(Inbox::new(self.fanout_encoding(), limit, policy));
        if !matches!(self.state, State::Open) {
            inbox.shut();
        }
        self.inbox = Some(inbox.clone());
        inbox
    }

    #[cfg_attr(
        not(feature = "deflate"),
        expect(
            clippy::unused_self,
            reason = "the codec is read with the deflate feature"
        )
    )]
    fn fanout_encoding(&self) -> fanout::Encoding {
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return codec
                .shared_deflate()
                .map_or(fanout::Encoding::Own, fanout::Encoding::Shared);
        }
        fanout::Encoding::Plain
    }

    /// Moves published frames into the write queue, ahead of whatever is queued next: all of
    /// them when `all` (before a message of our own, to keep the order they were made in),
    /// otherwise while the write queue is under its high-water mark. Once the connection is no
    /// longer open, the inbox is shut instead.
    #[inline]
    fn pull_inbox(&mut self, all: bool) {
        // Checked here, inlined: most sockets never subscribe, and a call per message to find
        // no inbox cost more than the check.
        if self.inbox.is_some() {
            self.pull_inbox_now(all);
        }
    }

    #[inline(never)]
    fn pull_inbox_now(&mut self, all: bool) {
        let Some(inbox) = &self.inbox else {
            return;
        };
        if !matches!(self.state, State::Open) {
            inbox.shut();
            self.inbox = None;
            return;
        }
        let high_water = self.config.high_water();
        let writer = &mut self.writer;
        let deflate = &mut self.deflate;
        let start = all || !high_water.reached_by(writer.len());
        let close = inbox.drain(start, |delivery| {
            match delivery {
                fanout::Delivery::Frame(frame) => writer.push_encoded(frame),
                fanout::Delivery::Compress {
                    frame,
                    header_len,
                    opcode,
                } => push_own_compressed(writer, deflate, frame, header_len, opcode),
            }
            all || !high_water.reached_by(writer.len())
        });
        if let Some(code) = close {
            self.begin_close(Some(&CloseFrame::new(code, fanout::SLOW_CLOSE_REASON)));
            if let Some(inbox) = self.inbox.take() {
                inbox.shut();
            }
        }
    }

    /// While waiting for input: registers for the next published frame, or returns `true` when
    /// frames are already waiting (the caller pulls them and looks again).
    #[inline]
    fn inbox_waiting(&self, cx: &Context<'_>) -> bool {
        self.inbox
            .as_ref()
            .is_some_and(|inbox| inbox.register(cx.waker()))
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Core<Io> {
    /// Runs `f` on the write queue and transport with a context that wakes the right task(s).
    fn poll_write_side<R>(
        &mut self,
        cx: &mut Context<'_>,
        side: Side,
        f: impl FnOnce(&mut WriteQueue, &mut Io, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        match self.shared_waker.as_deref() {
            None => f(&mut self.writer, &mut self.io, cx),
            Some((shared, waker)) => {
                shared.register(side, cx.waker());
                let mut shared_cx = Context::from_waker(waker);
                f(&mut self.writer, &mut self.io, &mut shared_cx)
            }
        }
    }

    /// Writes everything queued without waiting: used where the caller goes on regardless.
    fn try_flush(&mut self, cx: &mut Context<'_>, side: Side) -> Result<()> {
        if self.writer.is_empty() {
            return Ok(());
        }
        match self.poll_write_side(cx, side, WriteQueue::poll_flush) {
            Poll::Ready(Err(e)) => Err(Error::io(e)),
            _ => Ok(()),
        }
    }

    // ----- reading ------------------------------------------------------------------------

    /// The next message, `None` once the connection is finished.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if self.inbox.is_some() && !matches!(self.state, State::Open) {
                self.pull_inbox(false);
            }
            match self.state {
                State::Terminated => return Poll::Ready(None),
                State::Failed(_) => return self.poll_failed(cx).map(|e| e.map(Err)),
                State::Closing => {
                    ready!(self.poll_closing(cx));
                    return Poll::Ready(None);
                }
                State::Open | State::CloseSent => {}
            }
            if let Some(frame) = self.take_close_request() {
                self.begin_close(Some(&frame));
            }
            let rules = self.header_rules();
            let codec = self.deflate.as_deref_mut();
            match self
                .reader
                .next_event(rules, self.config.message_limit(), codec)
            {
                Err(rule) => {
                    self.fail(Error::protocol(rule));
                    continue;
                }
                Ok(Some(event)) => return Poll::Ready(Some(Ok(self.on_event(event, cx)))),
                Ok(None) => {}
            }
            // Every buffered frame is consumed: write what the application queued meanwhile,
            // and what was published to this socket, before waiting for the peer.
            self.pull_inbox(false);
            if let Err(e) = self.try_flush(cx, Side::Read) {
                self.state = State::Terminated;
                return Poll::Ready(Some(Err(e)));
            }
            if self.deferred_pong.is_some() && !self.config.over_high_water(self.writer.len()) {
                if let Some(payload) = self.deferred_pong.take()
                    && matches!(self.state, State::Open)
                {
                    self.queue(OpCode::Pong, *payload);
                }
                continue;
            }
            if self.config.over_high_water(self.writer.len()) {
                // The peer is not reading what we send; read no further (a ping flood would
                // otherwise grow the pong queue) until it does. The flush above registered
                // for the wake-up.
                ready!(self.poll_timers(cx));
                continue;
            }
            match self
                .reader
                .poll_fill(&mut self.io, cx, self.config.read_chunk())
            {
                Poll::Ready(Ok(0)) => return Poll::Ready(self.on_eof()),
                Poll::Ready(Ok(_)) => {
                    if let Some(k) = &mut self.keepalive {
                        k.last_seen = Instant::now();
                        k.pinged = false;
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.state = State::Terminated;
                    return Poll::Ready(Some(Err(Error::io(e))));
                }
                Poll::Pending => {
                    if self.inbox_waiting(cx) {
                        continue;
                    }
                    ready!(self.poll_timers(cx));
                }
            }
        }
    }

    /// Handles a received event; returns the message to hand to the application.
    fn on_event(&mut self, event: Event, cx: &mut Context<'_>) -> Message {
        match event {
            Event::Message(message) => message,
            Event::Ping(payload) => {
                if self.config.answers_pings()
                    && matches!(self.state, State::Open)
                    && self.config.over_high_water(self.writer.len())
                {
                    // Replaced in place: a ping flood allocates once.
                    match &mut self.deferred_pong {
                        Some(slot) => **slot = payload.clone(),
                        None => self.deferred_pong = Some(Box::new(payload.clone())),
                    }
                } else if self.config.answers_pings() && matches!(self.state, State::Open) {
                    self.queue(OpCode::Pong, payload.clone());
                    if !self.reader.has_complete_frame() {
                        // Answer now rather than when the application next reads. A write
                        // error surfaces on the next read or send.
                        let _ = self.try_flush(cx, Side::Read);
                    }
                }
                Message::Ping(payload)
            }
            Event::Pong(payload) => Message::Pong(payload),
            Event::Close(frame) => {
                tracing::debug!(
                    code = frame.as_ref().map(|f| f.code.as_u16()),
                    reason = frame.as_ref().map(|f| f.reason.as_str()),
                    "websocket close received"
                );
                if matches!(self.state, State::Open) {
                    // Echo the peer's code, as RFC 6455 section 5.5.1 suggests.
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.queue_close(reply.as_ref());
                }
                self.state = State::Closing;
                self.reader.discard();
                self.arm(self.config.get_close_timeout());
                // Get the reply out now, in case the application stops polling after the close.
                let _ = self.try_flush(cx, Side::Read);
                Message::Close(frame)
            }
        }
    }

    /// The transport reached end of stream.
    fn on_eof(&mut self) -> Option<Result<Message>> {
        let open = matches!(self.state, State::Open);
        self.state = State::Terminated;
        self.timer = None;
        // After our close frame, a transport closed without an answer still ends the
        // connection; before it, the peer left without the close handshake.
        open.then(|| Err(Error::abrupt_eof()))
    }

    /// Runs the close request, keepalive and close deadlines while waiting for input.
    ///
    /// `Ready` means the state changed (a close began, the connection failed) and the caller
    /// should look again; `Pending` means a wake-up is registered.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(signal) = &self.signal {
            // Registering takes a lock: skip it while the task's waker is the one registered.
            if !self
                .signal_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                signal.register(cx.waker());
                self.signal_waker = Some(cx.waker().clone());
            }
            if signal.is_requested() && matches!(self.state, State::Open) {
                return Poll::Ready(());
            }
        }
        loop {
            if self.timer.is_none() {
                let Some(k) = &self.keepalive else {
                    return Poll::Pending;
                };
                let due = k.last_seen + k.interval;
                self.timer = Some(Box::pin(tokio::time::sleep_until(due)));
            }
            if !self.timer_expired(cx) {
                return Poll::Pending;
            }
            if matches!(self.state, State::CloseSent) {
                self.fail(Error::timeout(
                    "peer did not answer the close frame in time",
                ));
                return Poll::Ready(());
            }
            let Some(k) = &mut self.keepalive else {
                self.timer = None;
                return Poll::Pending;
            };
            let now = Instant::now();
            let ping_due = k.last_seen + k.interval;
            let give_up = ping_due + k.timeout;
            if now >= give_up {
                self.fail(
                    Error::timeout("no frame from the peer within the keepalive timeout")
                        .with_close_code(CloseCode::GOING_AWAY),
                );
                return Poll::Ready(());
            }
            let next = if now >= ping_due && !k.pinged {
                k.pinged = true;
                self.queue(OpCode::Ping, Bytes::new());
                // A write error surfaces on the next read or send.
                let _ = self.try_flush(cx, Side::Read);
                give_up
            } else if now >= ping_due {
                give_up
            } else {
                ping_due
            };
            if let Some(t) = &mut self.timer {
                t.as_mut().reset(next);
            }
        }
    }

    /// Flushes the failure close frame (within the close timeout), shuts the transport down and
    /// returns the error.
    fn poll_failed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Error>> {
        if !self.writer.is_empty() {
            let flushed = self.poll_write_side(cx, Side::Read, WriteQueue::poll_flush);
            if flushed.is_pending() && !self.timer_expired(cx) {
                return Poll::Pending;
            }
        }
        if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() && !self.timer_expired(cx) {
            return Poll::Pending;
        }
        let error = match std::mem::replace(&mut self.state, State::Terminated) {
            State::Failed(error) => error,
            _ => None,
        };
        self.timer = None;
        Poll::Ready(error)
    }

    /// Finishes a completed close handshake: flush our close frame, then close the transport
    /// (server) or wait for the server to close it (client), within the close timeout.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.writer.is_empty() {
            match self.poll_write_side(cx, Side::Read, WriteQueue::poll_flush) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.terminate(),
                Poll::Pending if self.timer_expired(cx) => return self.terminate(),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.role == Role::Client {
            match read::poll_drain(&mut self.io, cx) {
                Poll::Ready(_) => {}
                Poll::Pending if self.timer_expired(cx) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() && !self.timer_expired(cx) {
            return Poll::Pending;
        }
        self.terminate()
    }

    fn terminate(&mut self) -> Poll<()> {
        self.state = State::Terminated;
        self.timer = None;
        Poll::Ready(())
    }

    // ----- writing ------------------------------------------------------------------------

    /// Ready when a message can be queued: the connection is open and the queue is under the
    /// high-water mark.
    #[inline]
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<()>> {
        if !self.signal.as_ref().is_some_and(|s| s.is_requested())
            && matches!(self.state, State::Open)
            && !self.config.over_high_water(self.writer.len())
        {
            // The common case, inlined into `send`: nothing to close, room in the queue.
            return Poll::Ready(Ok(()));
        }
        self.poll_ready_slow(cx, side)
    }

    #[inline(never)]
    fn poll_ready_slow(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<()>> {
        if let Some(frame) = self.take_close_request() {
            self.begin_close(Some(&frame));
        }
        if !matches!(self.state, State::Open) {
            return Poll::Ready(Err(Error::closed()));
        }
        if self.config.over_high_water(self.writer.len()) {
            let limit = self.config.get_write_buffer_high_water();
            let drained =
                self.poll_write_side(cx, side, |w, io, cx| w.poll_drain_below(io, cx, limit));
            match (drained, self.config.backpressure_policy()) {
                (Poll::Ready(Ok(())), _) => {}
                (Poll::Ready(Err(e)), _) => {
                    self.state = State::Terminated;
                    return Poll::Ready(Err(Error::io(e)));
                }
                (Poll::Pending, Backpressure::Wait) => return Poll::Pending,
                (Poll::Pending, Backpressure::Reject) => {
                    return Poll::Ready(Err(Error::backpressure()));
                }
                (Poll::Pending, Backpressure::Close) => {
                    // The peer is not reading: a close frame behind the queue would not reach
                    // it either. Drop the queue and end the connection now.
                    tracing::debug!(
                        queued = self.writer.len(),
                        "websocket closed: the peer stopped reading"
                    );
                    self.writer = WriteQueue::default();
                    self.reader.discard();
                    self.state = State::Terminated;
                    self.timer = None;
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                    return Poll::Ready(Err(Error::backpressure()
                        .with_context("the peer stopped reading: connection closed")));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `message` (call after [`poll_ready`](Self::poll_ready)).
    pub(crate) fn start_send(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Close(frame) => {
                if let Some(frame) = &frame {
                    frame.check_sendable().map_err(Error::invalid_message)?;
                }
                match self.state {
                    State::Open => {
                        self.begin_close(frame.as_ref());
                        Ok(())
                    }
                    // A close frame has already gone (or is going) out: nothing to add.
                    State::CloseSent | State::Closing | State::Failed(_) => Ok(()),
                    State::Terminated => Err(Error::closed()),
                }
            }
            other => {
                self.pull_inbox(true);
                if !matches!(self.state, State::Open) {
                    return Err(Error::closed());
                }
                let (opcode, payload) = match other {
                    Message::Text(text) => (OpCode::Text, text.into_bytes()),
                    Message::Binary(data) => (OpCode::Binary, data),
                    Message::Ping(data) => (OpCode::Ping, data),
                    Message::Pong(data) => (OpCode::Pong, data),
                    Message::Close(_) => return Ok(()),
                };
                if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
                    return Err(Error::invalid_message(
                        "control frame payload over 125 bytes",
                    ));
                }
                if !opcode.is_control() && self.sending_pieces.is_some() {
                    return Err(Error::invalid_message(
                        "a message sent in pieces is unfinished: send its last frame first",
                    ));
                }
                #[cfg(feature = "deflate")]
                if !opcode.is_control()
                    && let Some(codec) = &mut self.deflate
                    && codec.should_compress(payload.len())
                {
                    let compressed = codec.compress(&payload);
                    let mask = self.mask();
                    self.writer
                        .push(opcode, true, super::frame::RSV1, compressed, mask);
                    return Ok(());
                }
                self.queue(opcode, payload);
                Ok(())
            }
        }
    }

    /// Queues one frame of a message sent in pieces (call after [`poll_ready`](Self::poll_ready)).
    pub(crate) fn start_send_frame(&mut self, frame: Frame) -> Result<()> {
        self.pull_inbox(true);
        if !matches!(self.state, State::Open) {
            return Err(Error::closed());
        }
        let Frame {
            opcode,
            fin,
            payload,
        } = frame;
        match opcode {
            OpCode::Close => {
                return Err(Error::invalid_message(
                    "close frames are sent with close() or Message::Close",
                ));
            }
            OpCode::Ping | OpCode::Pong => {
                if !fin || payload.len() > MAX_CONTROL_PAYLOAD {
                    return Err(Error::invalid_message(
                        "control frames cannot be fragmented or carry over 125 bytes",
                    ));
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.sending_pieces.is_some() {
                    return Err(Error::invalid_message(
                        "a message sent in pieces is unfinished: continue it first",
                    ));
                }
                let mut pieces = if opcode == OpCode::Text {
                    Pieces::Text(Utf8Validator::default())
                } else {
                    Pieces::Binary
                };
                pieces.check(&payload, fin)?;
                if !fin {
                    self.sending_pieces = Some(pieces);
                }
            }
            OpCode::Continuation => {
                let Some(pieces) = &mut self.sending_pieces else {
                    return Err(Error::invalid_message(
                        "a continuation frame needs a text or binary frame without fin first",
                    ));
                };
                pieces.check(&payload, fin)?;
                if fin {
                    self.sending_pieces = None;
                }
            }
        }
        let mask = self.mask();
        self.writer.push(opcode, fin, 0, payload, mask);
        Ok(())
    }

    /// Whether `send` should write now: `false` while more received frames are buffered (the
    /// application is about to read them and will likely answer; the answers go out together)
    /// and the queue is under the flush threshold.
    pub(crate) fn should_flush_after_send(&self) -> bool {
        self.config.flush_due(self.writer.len()) || !self.reader.has_complete_frame()
    }

    /// Writes after a `send`. Under [`Backpressure::Wait`] everything queued is written (unless
    /// `may_defer` and more received frames are waiting, see
    /// [`should_flush_after_send`](Self::should_flush_after_send)); under the other policies
    /// `send` never waits, so this writes what the transport takes now and leaves the rest to the
    /// next write or read.
    #[inline]
    pub(crate) fn poll_send_flush(
        &mut self,
        cx: &mut Context<'_>,
        side: Side,
        may_defer: bool,
    ) -> Poll<Result<()>> {
        if may_defer && !self.should_flush_after_send() {
            return Poll::Ready(Ok(()));
        }
        self.poll_send_flush_now(cx, side)
    }

    #[inline(never)]
    fn poll_send_flush_now(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<()>> {
        match (self.poll_flush(cx, side), self.config.backpressure_policy()) {
            (Poll::Pending, Backpressure::Reject | Backpressure::Close) => Poll::Ready(Ok(())),
            (flushed, _) => flushed,
        }
    }

    /// Writes everything queued and flushes the transport.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<()>> {
        let flushed = ready!(self.poll_write_side(cx, side, WriteQueue::poll_flush));
        Poll::Ready(flushed.map_err(|e| {
            if !matches!(self.state, State::Failed(_)) {
                self.state = State::Terminated;
            }
            Error::io(e)
        }))
    }

    /// Sends a close frame (if none was sent), then reads and discards until the peer's close
    /// frame arrives and the transport is closed, or the close timeout passes.
    pub(crate) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        frame: Option<&CloseFrame>,
    ) -> Poll<Result<()>> {
        if matches!(self.state, State::Open) {
            self.begin_close(frame);
        }
        loop {
            match ready!(self.poll_next(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Queues a close frame and flushes it, without waiting for the answer (the write half of a
    /// split connection, whose read half sees the answer).
    pub(crate) fn poll_send_close(
        &mut self,
        cx: &mut Context<'_>,
        frame: Option<&CloseFrame>,
        side: Side,
    ) -> Poll<Result<()>> {
        if matches!(self.state, State::Open) {
            self.begin_close(frame);
        }
        self.poll_flush(cx, side)
    }
}

/// A message being sent in pieces.
#[derive(Debug, Clone, Copy)]
enum Pieces {
    /// Text, with its UTF-8 checked up to the last piece sent.
    Text(Utf8Validator),
    Binary,
}

impl Pieces {
    /// Checks the next piece. A refused piece leaves the state as it was, so the application
    /// can send a corrected one.
    fn check(&mut self, payload: &[u8], fin: bool) -> Result<()> {
        if let Self::Text(v) = self {
            let mut trial = *v;
            let valid = trial.feed(payload).is_ok() && (!fin || trial.finish().is_ok());
            if !valid {
                return Err(Error::invalid_message("text frames must carry valid UTF-8"));
            }
            *v = trial;
        }
        Ok(())
    }
}

/// Queues a published frame for a socket that compresses with its own context (or as it is,
/// under the socket's compression threshold).
fn push_own_compressed(
    writer: &mut WriteQueue,
    deflate: &mut Option<Box<Codec>>,
    frame: &Bytes,
    header_len: u8,
    opcode: OpCode,
) {
    #[cfg(feature = "deflate")]
    if let Some(codec) = deflate.as_deref_mut() {
        let payload = frame.get(usize::from(header_len)..).unwrap_or_default();
        if codec.should_compress(payload.len()) {
            let compressed = codec.compress(payload);
            writer.push(opcode, true, super::frame::RSV1, compressed, None);
            return;
        }
    }
    let _ = (deflate, header_len, opcode);
    writer.push_encoded(frame);
}

fn truncate_to_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
