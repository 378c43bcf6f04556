//! One core's state: its shard, its connections' outbound queues, its links to the other
//! cores, and the dispatch loop that turns the shard's outputs into queued frames.
//!
//! Everything here lives on one thread (`Rc`/`RefCell`, no locks). The shard is fed by the
//! connection drivers (`conn`), by the mailbox tasks (messages from other cores) and by the
//! timer task; after each input, [`Core::dispatch`] drains `poll_output`. It does not read
//! or write sockets: the drivers do, woken through each connection's [`ConnShared`].
//!
//! Slow-consumer policy: each connection's outbound bytes not yet handed to the kernel
//! (queued, plus the batch its driver is writing) are bounded by its service's
//! `max_outbound_bytes` (16 MiB unless configured). A connection past it is
//! disconnected (its queue dropped, a warning logged naming the connection, the bytes queued
//! and the limit, and the driver told to abandon any write in progress and close the socket
//! at once): memory stays bounded, the session leaves, and the other sessions are not held
//! back by it.
//!
//! Stalled-core policy: the messages waiting for room in the link toward another core are
//! bounded by [`BACKLOG_LIMIT`] bytes. A core that stops draining its link for that long
//! is treated as down: the backlog is dropped, nothing more is sent to it, an error is
//! logged, and this core's shard drops everything that core owned (`handle_shard_down`),
//! so that callers get errors instead of waiting forever and memory stays bounded. The
//! same bound applies to a link toward a shard of another worker process (`link`), whose
//! socket is then shut down so that the other side treats this shard as down too.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::{Goodbye, Message};
use switchyard_core::router::{ConnId, Output, Shard, Time};

use super::link::RemoteLink;
use crate::rawsocket::{self, FrameType};
use crate::ws::frame::{self, OpCode};

/// Messages a link holds in flight between two cores; past it the sender keeps them in
/// order in its local backlog until the receiver catches up.
pub(super) const LINK_CAPACITY: usize = 4096;
/// The most bytes waiting in the local backlog toward one core before that core is
/// treated as down (see the module's stalled-core policy), unless the configuration's
/// `options.link_backlog` says otherwise.
pub(super) const BACKLOG_LIMIT: usize = 256 << 20;
/// Messages from one link handled before the shard's outputs are dispatched.
pub(super) const MAILBOX_BATCH: usize = 256;

/// One queued outbound item.
pub(super) enum Out {
    /// An encoded WAMP message the connection's transport frames.
    Message(Bytes),
    /// A complete frame, framed once by the core for every connection of one transport
    /// kind in a fan-out; written as it is, never copied per connection.
    Frame(Bytes),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Self::Message(b) | Self::Frame(b) => b.len(),
        }
    }
}

/// How the core may pre-frame a fan-out for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// Every message is framed by the connection (e.g. permessage-deflate, whose
    /// compression context is the connection's own).
    PerConnection,
    /// An uncompressed WebSocket: one unmasked server frame fits every such connection.
    WebSocket,
    /// RawSocket: one prefixed frame fits every connection whose peer accepts its length.
    RawSocket {
        /// The largest message the peer receives.
        peer_max: usize,
    },
}

/// What a connection driver shares with its core.
pub(super) struct ConnShared {
    /// The connection's serializer (for the shutdown GOODBYE).
    pub(super) serializer: Serializer,
    /// How fan-outs may be pre-framed for this connection.
    framing: Framing,
    /// The most bytes `queue` may hold (the slow-consumer bound).
    max_outbound: usize,
    /// Messages and frames waiting to be written.
    queue: RefCell<VecDeque<Out>>,
    /// The bytes in `queue`.
    queued: Cell<usize>,
    /// The bytes the driver took from `queue` and has not finished writing: they count
    /// toward the bound too, so a peer that stops reading holds at most the bound.
    in_flight: Cell<usize>,
    /// Close after writing what is queued.
    close: Cell<bool>,
    /// The slow-consumer policy dropped this connection: the driver abandons even a write
    /// in progress (the peer may never read it) and closes the socket.
    dropped: Cell<bool>,
    /// The WebSocket close code: 1002 when the session ended in a protocol violation (as
    /// Crossbar closes), 1000 otherwise.
    close_code: Cell<u16>,
    /// The driver waiting for output, if any.
    waker: Cell<Option<Waker>>,
    /// Between HELLO and WELCOME/ABORT: the next outputs are decoded once to log the join.
    joining: Cell<bool>,
    /// A WELCOME was sent: the connection carries a session, which gets GOODBYE at
    /// shutdown (a connection that never joined is only closed).
    joined: Cell<bool>,
}

impl ConnShared {
    pub(super) fn new(serializer: Serializer, framing: Framing, max_outbound: usize) -> Self {
        Self {
            serializer,
            framing,
            max_outbound,
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            in_flight: Cell::new(0),
            close: Cell::new(false),
            dropped: Cell::new(false),
            close_code: Cell::new(1000),
            waker: Cell::new(None),
            joining: Cell::new(false),
            joined: Cell::new(false),
        }
    }

    /// Whether the driver has something to do.
    pub(super) fn has_work(&self) -> bool {
        !self.queue.borrow().is_empty() || self.close.get()
    }

    /// Whether the slow-consumer policy dropped the connection.
    pub(super) fn is_dropped(&self) -> bool {
        self.dropped.get()
    }

    /// The driver finished writing everything it took.
    pub(super) fn written(&self) {
        self.in_flight.set(0);
    }

    /// Remembers the driver's waker.
    pub(super) fn register(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    /// Takes every queued item, and the WebSocket close code if the connection must close
    /// after them.
    pub(super) fn take(&self) -> (VecDeque<Out>, Option<u16>) {
        self.in_flight
            .set(self.in_flight.get() + self.queued.replace(0));
        (
            std::mem::take(&mut *self.queue.borrow_mut()),
            self.close.get().then(|| self.close_code.get()),
        )
    }

    fn push(&self, conn: ConnId, item: Out) {
        if self.close.get() {
            return;
        }
        let queued = self.queued.get() + item.len();
        if queued + self.in_flight.get() > self.max_outbound {
            tracing::warn!(
                conn = conn.0,
                queued,
                in_flight = self.in_flight.get(),
                limit = self.max_outbound,
                "slow consumer: outbound queue over its limit, disconnecting"
            );
            self.queue.borrow_mut().clear();
            self.queued.set(0);
            self.close.set(true);
            self.dropped.set(true);
        } else {
            self.queued.set(queued);
            self.queue.borrow_mut().push_back(item);
        }
        self.wake();
    }

    fn close(&self) {
        self.close.set(true);
        self.wake();
    }

    /// Before a shard-requested close: if the last queued message is an ABORT for a
    /// protocol violation, the WebSocket closes with 1002. Decoded only here, once per
    /// closing connection.
    fn note_close_reason(&self) {
        let queue = self.queue.borrow();
        let Some(Out::Message(last)) = queue.back() else {
            return;
        };
        if let Ok(Message::Abort(abort)) = codec::decode(self.serializer, last.clone()) {
            if abort.reason == "wamp.error.protocol_violation" {
                self.close_code.set(1002);
            }
        }
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The sending end of the link to another core, with the local backlog that keeps FIFO
/// order when the link is full.
pub(super) struct LinkOut {
    tx: flume::Sender<Bytes>,
    backlog: RefCell<VecDeque<Bytes>>,
    /// The bytes in `backlog`.
    backlogged: Cell<usize>,
    /// The backlog went past [`BACKLOG_LIMIT`]: the other core is treated as down.
    broken: Cell<bool>,
    limit: usize,
    waker: Cell<Option<Waker>>,
}

/// A core's link to another shard: in-process (another thread of this worker) or to a
/// shard of another worker process.
pub(super) enum Link {
    /// A bounded channel to a thread of this process.
    Local(Rc<LinkOut>),
    /// A Unix socket to another worker process.
    Remote(Rc<RemoteLink>),
}

/// What became of a message sent on a link.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// In the link or its backlog.
    Queued,
    /// Dropped: the link is broken (this message broke it, or an earlier one did).
    Dropped,
    /// This message broke the link: the caller treats the other core as down.
    Broke,
}

impl LinkOut {
    pub(super) fn new(tx: flume::Sender<Bytes>, limit: usize) -> Self {
        Self {
            tx,
            backlog: RefCell::new(VecDeque::new()),
            backlogged: Cell::new(0),
            broken: Cell::new(false),
            limit,
            waker: Cell::new(None),
        }
    }

    fn send(&self, bytes: Bytes) -> Sent {
        if self.broken.get() {
            return Sent::Dropped;
        }
        // Behind a backlog, a message must wait its turn: links are FIFO.
        if self.backlog.borrow().is_empty() {
            match self.tx.try_send(bytes) {
                Ok(()) | Err(flume::TrySendError::Disconnected(_)) => return Sent::Queued,
                Err(flume::TrySendError::Full(bytes)) => self.backlog_push(bytes),
            }
        } else {
            self.backlog_push(bytes);
        }
        if self.backlogged.get() > self.limit {
            self.broken.set(true);
            self.backlog.borrow_mut().clear();
            self.backlogged.set(0);
            return Sent::Broke;
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        Sent::Queued
    }

    fn backlog_push(&self, bytes: Bytes) {
        self.backlogged.set(self.backlogged.get() + bytes.len());
        self.backlog.borrow_mut().push_back(bytes);
    }

    /// Moves the backlog into the link, waiting for room; runs as a task per link.
    pub(super) async fn pump(self: Rc<Self>) {
        loop {
            let next = poll_fn(|cx| match self.backlog.borrow_mut().pop_front() {
                Some(bytes) => {
                    self.backlogged
                        .set(self.backlogged.get().saturating_sub(bytes.len()));
                    Poll::Ready(bytes)
                }
                None => {
                    self.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            if self.tx.send_async(next).await.is_err() {
                return;
            }
        }
    }
}

/// One core's router state.
pub(super) struct Core {
    pub(super) shard: Shard,
    conns: HashMap<ConnId, Rc<ConnShared>>,
    next_conn: u64,
    links: Vec<Option<Link>>,
    /// The generation the next remote link gets.
    generations: u64,
    start: Instant,
    /// This core's worker process (0 without worker processes), for log lines.
    worker: u16,
    /// Set at shutdown: connections accepted from then on are dropped.
    pub(super) stopping: bool,
    /// Connections still in their opening handshake (TLS, WebSocket or RawSocket), with
    /// the waker of each, so that shutdown cuts them short.
    opening: HashMap<u64, Option<Waker>>,
    next_opening: u64,
    /// The bound of each link's backlog (in-process or to another worker), in bytes.
    pub(super) link_backlog: usize,
    /// The worker's control socket (worker processes only): a link that breaks at its
    /// bound is reported to the controller, which restarts the stalled shard's worker.
    pub(super) control: Option<Arc<OwnedFd>>,
}

impl Core {
    pub(super) fn new(shard: Shard, links: Vec<Option<Link>>, start: Instant, worker: u16) -> Self {
        Self {
            shard,
            conns: HashMap::new(),
            next_conn: 1,
            links,
            generations: 0,
            start,
            worker,
            stopping: false,
            opening: HashMap::new(),
            next_opening: 0,
            link_backlog: BACKLOG_LIMIT,
            control: None,
        }
    }

    /// A generation number for a new remote link.
    pub(super) fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Makes `link` the link to its shard, retiring the one it replaces.
    pub(super) fn set_remote_link(&mut self, link: Rc<RemoteLink>) {
        let slot = usize::from(link.to);
        if slot >= self.links.len() {
            self.links.resize_with(slot + 1, || None);
        }
        if let Some(Link::Remote(old)) = self.links[slot].replace(Link::Remote(link)) {
            old.retire();
        }
    }

    /// Whether `link` is the current link to its shard.
    pub(super) fn link_is_current(&self, link: &RemoteLink) -> bool {
        matches!(
            self.links.get(usize::from(link.to)),
            Some(Some(Link::Remote(current))) if current.generation == link.generation
        )
    }

    /// The shards this core has no link to (other than itself): shards of workers that
    /// are not running.
    pub(super) fn unlinked_shards(&self) -> Vec<u16> {
        let me = self.shard.index();
        (0..self.links.len())
            .filter_map(|i| u16::try_from(i).ok())
            .filter(|&i| i != me && self.links[usize::from(i)].is_none())
            .collect()
    }

    /// A connection starts its opening handshake; returns its ticket.
    pub(super) fn opening_started(&mut self) -> u64 {
        self.next_opening += 1;
        self.opening.insert(self.next_opening, None);
        self.next_opening
    }

    /// Polled with the opening handshake: `true` when shutdown began, so the opening must
    /// stop; otherwise remembers the waker for shutdown to wake.
    pub(super) fn opening_poll(&mut self, ticket: u64, waker: &Waker) -> bool {
        if self.stopping {
            return true;
        }
        if let Some(slot) = self.opening.get_mut(&ticket) {
            *slot = Some(waker.clone());
        }
        false
    }

    /// The opening handshake ended (either way).
    pub(super) fn opening_finished(&mut self, ticket: u64) {
        self.opening.remove(&ticket);
    }

    /// The shard's clock: microseconds since the node started (the same epoch on every core
    /// of every worker process).
    pub(super) fn now(&self) -> Time {
        Time(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Registers a new connection and returns its id and shared state.
    pub(super) fn open(
        &mut self,
        serializer: Serializer,
        framing: Framing,
        max_outbound: usize,
    ) -> (ConnId, Rc<ConnShared>) {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let shared = Rc::new(ConnShared::new(serializer, framing, max_outbound));
        self.conns.insert(id, Rc::clone(&shared));
        (id, shared)
    }

    /// Forgets a connection whose transport is gone.
    pub(super) fn remove(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Notes that a connection sent HELLO, so that its WELCOME is logged with this core's
    /// index (the one place that names the core a session lives on).
    pub(super) fn note_hello(&self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            c.joining.set(true);
        }
    }

    /// How many connections this core serves, open or opening.
    pub(super) fn connection_count(&self) -> usize {
        self.conns.len() + self.opening.len()
    }

    /// Acts on every output of the shard.
    pub(super) fn dispatch(&mut self) {
        while let Some(output) = self.shard.poll_output() {
            match output {
                Output::Send { conn, bytes } => {
                    if let Some(c) = self.conns.get(&conn) {
                        if c.joining.get() {
                            log_join(self.worker, self.shard.index(), conn, c, &bytes);
                        }
                        c.push(conn, Out::Message(bytes));
                    }
                }
                Output::Fanout {
                    conns,
                    serializer,
                    bytes,
                } => self.fanout(&conns, serializer, &bytes),
                Output::Close { conn } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.note_close_reason();
                        c.close();
                    }
                }
                Output::Peer { to, bytes } => {
                    let sent = match self.links.get(usize::from(to)).and_then(Option::as_ref) {
                        Some(Link::Local(link)) => link.send(bytes),
                        Some(Link::Remote(link)) => link.send(bytes),
                        None => {
                            tracing::error!(to, "peer message for an unknown core dropped");
                            Sent::Dropped
                        }
                    };
                    if sent == Sent::Broke {
                        tracing::error!(
                            to,
                            "core {to} stopped draining its link (over {} bytes \
                             waiting): treating it as down",
                            self.link_backlog
                        );
                        self.report_stalled(to);
                        let now = self.now();
                        self.shard.handle_shard_down(now, to);
                    }
                }
            }
        }
    }

    /// Tells the controller (if any) that shard `to` stopped reading: it restarts that
    /// shard's worker, so that the router converges again instead of staying split.
    fn report_stalled(&self, to: u16) {
        let Some(control) = &self.control else {
            return;
        };
        let me = self.shard.index();
        if let Err(e) = super::control::send_stalled(control.as_fd(), me, to) {
            tracing::error!(core = me, shard = to, error = %e, "cannot report a stalled shard");
        }
    }

    /// Queues one message for many connections: framed at most once per transport kind,
    /// and the same frame handed to every connection of that kind.
    fn fanout(&self, conns: &[ConnId], serializer: Serializer, bytes: &Bytes) {
        let mut ws: Option<Bytes> = None;
        let mut raw: Option<Bytes> = None;
        for &conn in conns {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let item = match c.framing {
                Framing::WebSocket => Out::Frame(
                    ws.get_or_insert_with(|| {
                        let opcode = match serializer {
                            Serializer::Json => OpCode::Text,
                            Serializer::MsgPack => OpCode::Binary,
                        };
                        frame::server_frame(opcode, bytes)
                    })
                    .clone(),
                ),
                Framing::RawSocket { peer_max } if bytes.len() <= peer_max => Out::Frame(
                    raw.get_or_insert_with(|| rawsocket::frame(FrameType::Message, bytes))
                        .clone(),
                ),
                // Over the peer's limit the transport refuses it (and logs why).
                Framing::RawSocket { .. } | Framing::PerConnection => Out::Message(bytes.clone()),
            };
            c.push(conn, item);
        }
    }

    /// Graceful shutdown, first step: every session gets GOODBYE
    /// `wamp.close.system_shutdown` and its connection is closed after its queue is
    /// written; connections without a session are closed (WebSocket: 1001, going away),
    /// and connections still opening stop.
    pub(super) fn goodbye_all(&mut self) {
        self.stopping = true;
        for waker in self.opening.values_mut().filter_map(Option::take) {
            waker.wake();
        }
        let goodbye = Message::Goodbye(Goodbye {
            details: Default::default(),
            reason: "wamp.close.system_shutdown".to_owned(),
        });
        let mut encoded: [Option<Bytes>; 2] = [None, None];
        for (conn, c) in &self.conns {
            if !c.joined.get() {
                c.close_code.set(1001);
                c.close();
                continue;
            }
            let slot = match c.serializer {
                Serializer::Json => 0,
                Serializer::MsgPack => 1,
            };
            let bytes = encoded[slot].get_or_insert_with(|| {
                let mut out = Vec::new();
                // GOODBYE carries no payload, so encoding cannot meet a serializer mismatch.
                let _ = codec::encode(c.serializer, &goodbye, &mut out);
                Bytes::from(out)
            });
            c.push(*conn, Out::Message(bytes.clone()));
            c.close();
        }
    }
}

/// Logs a session's join (or the end of its attempt) naming the core that holds it; only
/// the messages sent between HELLO and WELCOME or ABORT are decoded for it.
fn log_join(worker: u16, core: u16, conn: ConnId, c: &ConnShared, bytes: &Bytes) {
    match codec::decode(c.serializer, bytes.clone()) {
        Ok(Message::Welcome(w)) => {
            c.joining.set(false);
            c.joined.set(true);
            tracing::info!(
                worker,
                core,
                conn = conn.0,
                session = w.session.get(),
                "session joined"
            );
        }
        Ok(Message::Abort(_)) => c.joining.set(false),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of capacity 1 whose receiver never drains: the backlog grows to the limit,
    /// the message past it breaks the link, and later messages are dropped.
    #[test]
    fn a_stalled_link_breaks_at_its_backlog_limit() {
        let (tx, rx) = flume::bounded(1);
        let link = LinkOut::new(tx, 10);
        let msg = || Bytes::from_static(b"four");
        let sent: Vec<Sent> = (0..6).map(|_| link.send(msg())).collect();
        // 1 in the channel, then 4 + 4 bytes backlogged (8 <= 10), then 12 > 10 breaks it.
        assert_eq!(
            sent,
            [
                Sent::Queued,
                Sent::Queued,
                Sent::Queued,
                Sent::Broke,
                Sent::Dropped,
                Sent::Dropped
            ]
        );
        assert_eq!(link.backlogged.get(), 0);
        assert!(link.backlog.borrow().is_empty());
        assert_eq!(rx.len(), 1);
    }

    /// Below the limit, the backlog keeps FIFO order behind the channel.
    #[test]
    fn the_backlog_keeps_order_below_its_limit() {
        let (tx, rx) = flume::bounded(2);
        let link = LinkOut::new(tx, 1 << 20);
        for i in 0..5u8 {
            assert_eq!(link.send(Bytes::from(vec![i])), Sent::Queued);
        }
        assert_eq!(link.backlogged.get(), 3);
        let order: Vec<u8> = rx.drain().map(|b| b[0]).collect();
        let rest: Vec<u8> = link.backlog.borrow().iter().map(|b| b[0]).collect();
        assert_eq!((order, rest), (vec![0, 1], vec![2, 3, 4]));
    }

    /// The slow-consumer bound counts what the driver took and has not written yet: with
    /// a 10-byte bound, 4 bytes in flight leave room for 6 more; the 7th drops the
    /// connection, and after that nothing is queued.
    #[test]
    fn the_outbound_bound_counts_bytes_in_flight() {
        let c = ConnShared::new(Serializer::Json, Framing::WebSocket, 10);
        let msg = |n: usize| Out::Message(Bytes::from(vec![0u8; n]));
        c.push(ConnId(1), msg(4));
        let (taken, close) = c.take();
        assert_eq!((taken.len(), close), (1, None));
        c.push(ConnId(1), msg(6));
        assert!(!c.is_dropped());
        c.written();
        c.push(ConnId(1), msg(4));
        assert!(!c.is_dropped(), "written bytes no longer count");
        let _ = c.take();
        c.push(ConnId(1), msg(7));
        assert!(c.is_dropped());
        c.push(ConnId(1), msg(1));
        let (taken, close) = c.take();
        assert_eq!((taken.len(), close), (0, Some(1000)));
    }
}
