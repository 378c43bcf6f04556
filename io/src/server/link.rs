//! Links between shards in different worker processes: one Unix stream socket per pair of
//! shards, made by the controller (`socketpair(2)`) and handed to both workers.
//!
//! Each message a shard sends to a shard of another worker (the core's `PeerMsg` bytes,
//! version byte included) travels as one frame: sender shard (u16), receiver shard (u16),
//! length (u32), all little-endian, then the bytes. Each end of a link belongs to exactly
//! one core thread, so the data path takes no lock: the shard's outputs are queued on the
//! [`RemoteLink`] and a writer task writes them in batches; a reader task deframes what
//! arrives and feeds the shard.
//!
//! The queue is bounded like the in-process links (`BACKLOG_LIMIT` bytes): a worker that
//! stops reading for that long is treated as down, and the socket is shut down so that
//! its shard sees this end as down too. End of stream or an error on the socket means the
//! other worker died: the shard drops everything the other shard owned
//! (`Shard::handle_shard_down`). A link replaced by a newer one (the controller linked a
//! restarted worker) is retired: its unread bytes belong to the dead worker's previous
//! life and are dropped, and its end of stream is no news.
//!
//! It does not make links, restart workers or decide ownership: the controller makes the
//! sockets, and the core's membership protocol (`Shard::rejoin`) does the rest.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::UnixStream;

use super::core::{Core, Sent};

/// The frame header: sender shard, receiver shard, length.
pub(super) const HEADER: usize = 8;
/// The longest frame a reader accepts: a sender breaks its link before queueing more than
/// this, so a longer length can only be corruption.
pub(super) const MAX_FRAME: usize = super::core::BACKLOG_LIMIT;
/// The reader's buffer for one read.
const READ_SIZE: usize = 64 << 10;
/// A writer keeps a batch buffer at most this large between batches.
const KEEP_BUFFER: usize = 1 << 20;

/// Why the bytes on a link are not a valid frame stream (only a bug or memory corruption
/// can cause one: both ends run this code).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(super) enum LinkError {
    /// The frame names a sender other than the shard at the link's other end.
    WrongSender {
        /// The link's other shard.
        expected: u16,
        /// The frame's sender.
        got: u16,
    },
    /// The frame names a receiver other than this end's shard.
    WrongReceiver {
        /// This end's shard.
        expected: u16,
        /// The frame's receiver.
        got: u16,
    },
    /// The frame is longer than [`MAX_FRAME`].
    TooLong(usize),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongSender { expected, got } => {
                write!(f, "frame from shard {got} on the link to shard {expected}")
            }
            Self::WrongReceiver { expected, got } => {
                write!(f, "frame for shard {got} on a link of shard {expected}")
            }
            Self::TooLong(n) => write!(f, "frame of {n} bytes (limit {MAX_FRAME})"),
        }
    }
}

/// Appends one frame to `out`.
pub(super) fn encode_frame(out: &mut Vec<u8>, from: u16, to: u16, bytes: &[u8]) {
    out.extend_from_slice(&from.to_le_bytes());
    out.extend_from_slice(&to.to_le_bytes());
    // A queued message is at most BACKLOG_LIMIT (256 MiB) bytes: it fits a u32.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits a link's byte stream into frames, checking each header before buffering its
/// body, so the buffer never holds more than one frame plus one read.
pub(super) struct Deframer {
    /// The shard at the other end.
    from: u16,
    /// This end's shard.
    to: u16,
    buf: BytesMut,
}

impl Deframer {
    pub(super) fn new(from: u16, to: u16) -> Self {
        Self {
            from,
            to,
            buf: BytesMut::new(),
        }
    }

    /// Adds bytes read from the link.
    pub(super) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame's message, if one is buffered.
    pub(super) fn next_frame(&mut self) -> Result<Option<Bytes>, LinkError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let from = u16::from_le_bytes([self.buf[0], self.buf[1]]);
        let to = u16::from_le_bytes([self.buf[2], self.buf[3]]);
        let len = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if from != self.from {
            return Err(LinkError::WrongSender {
                expected: self.from,
                got: from,
            });
        }
        if to != self.to {
            return Err(LinkError::WrongReceiver {
                expected: self.to,
                got: to,
            });
        }
        if len > MAX_FRAME {
            return Err(LinkError::TooLong(len));
        }
        if self.buf.len() < HEADER + len {
            self.buf.reserve(HEADER + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// This core's end of the link to one shard of another worker process.
pub(super) struct RemoteLink {
    /// This core's shard.
    pub(super) from: u16,
    /// The shard at the other end.
    pub(super) to: u16,
    /// Tells this link from an earlier or later link to the same shard.
    pub(super) generation: u64,
    queue: RefCell<VecDeque<Bytes>>,
    /// The bytes in `queue`.
    queued: Cell<usize>,
    /// Past the queue limit, or the socket failed: nothing more is sent.
    broken: Cell<bool>,
    /// The shard was told that the other shard is down because of this link.
    reported: Cell<bool>,
    limit: usize,
    /// The writer task, when it waits for messages.
    waker: Cell<Option<Waker>>,
    /// Kept to shut the socket down when the link breaks (the tasks hold their own
    /// descriptors of the same socket).
    socket: std::os::unix::net::UnixStream,
}

impl RemoteLink {
    fn new(
        from: u16,
        to: u16,
        generation: u64,
        limit: usize,
        socket: std::os::unix::net::UnixStream,
    ) -> Self {
        Self {
            from,
            to,
            generation,
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            broken: Cell::new(false),
            reported: Cell::new(false),
            limit,
            waker: Cell::new(None),
            socket,
        }
    }

    /// Sends (queues) one message for the other shard.
    pub(super) fn send(&self, bytes: Bytes) -> Sent {
        if self.broken.get() {
            return Sent::Dropped;
        }
        let queued = self.queued.get() + bytes.len();
        if queued > self.limit {
            self.retire();
            return Sent::Broke;
        }
        self.queued.set(queued);
        self.queue.borrow_mut().push_back(bytes);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        Sent::Queued
    }

    /// Stops the link for good: the queue is dropped, the socket shut down (so the other
    /// end sees end of stream) and the writer told to stop.
    pub(super) fn retire(&self) {
        if self.broken.replace(true) {
            return;
        }
        self.queue.borrow_mut().clear();
        self.queued.set(0);
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Takes every queued message framed into `out`; `false` when the link is broken.
    fn take_batch(&self, out: &mut Vec<u8>) -> bool {
        if self.broken.get() {
            return false;
        }
        for bytes in self.queue.borrow_mut().drain(..) {
            encode_frame(out, self.from, self.to, &bytes);
        }
        self.queued.set(0);
        true
    }
}

/// Installs a link from this core's shard to shard `to` of another worker over the
/// socket `fd`: the link replaces (and retires) any earlier one to that shard, and a
/// reader and a writer task start.
pub(super) fn install(core: &Rc<RefCell<Core>>, to: u16, fd: OwnedFd) -> io::Result<()> {
    let socket = std::os::unix::net::UnixStream::from(fd);
    socket.set_nonblocking(true)?;
    let reading = UnixStream::from_std(socket.try_clone()?)?;
    let writing = UnixStream::from_std(socket.try_clone()?)?;
    let link = {
        let mut c = core.borrow_mut();
        let from = c.shard.index();
        let generation = c.next_generation();
        let link = Rc::new(RemoteLink::new(
            from,
            to,
            generation,
            c.link_backlog,
            socket,
        ));
        c.set_remote_link(Rc::clone(&link));
        link
    };
    tracing::debug!(
        from = link.from,
        to,
        generation = link.generation,
        "link installed"
    );
    monoio::spawn(writer(Rc::clone(core), Rc::clone(&link), writing));
    monoio::spawn(reader(Rc::clone(core), link, reading));
    Ok(())
}

/// Writes the link's queued messages in batches until the link breaks.
async fn writer(core: Rc<RefCell<Core>>, link: Rc<RemoteLink>, mut stream: UnixStream) {
    let mut buf = Vec::new();
    loop {
        poll_fn(|cx| {
            if link.broken.get() || !link.queue.borrow().is_empty() {
                Poll::Ready(())
            } else {
                link.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        buf.clear();
        if buf.capacity() > KEEP_BUFFER {
            buf.shrink_to(KEEP_BUFFER);
        }
        if !link.take_batch(&mut buf) {
            return;
        }
        let (result, back) = stream.write_all(buf).await;
        buf = back;
        if let Err(e) = result {
            link_down(&core, &link, &format!("write failed: {e}"));
            return;
        }
    }
}

/// Feeds the shard what arrives on the link until end of stream.
async fn reader(core: Rc<RefCell<Core>>, link: Rc<RemoteLink>, mut stream: UnixStream) {
    let mut deframer = Deframer::new(link.to, link.from);
    let mut buf = Vec::with_capacity(READ_SIZE);
    let why = loop {
        let (result, back) = stream.read(buf).await;
        buf = back;
        match result {
            Ok(0) => break "end of stream".to_owned(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => break format!("read failed: {e}"),
        }
        deframer.push(&buf);
        buf.clear();
        let mut c = core.borrow_mut();
        if !c.link_is_current(&link) {
            // Retired: what is left belongs to the other worker's previous life.
            return;
        }
        let now = c.now();
        let bad = loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    if let Err(e) = c.shard.handle_peer(now, link.to, &bytes) {
                        tracing::error!(from = link.to, error = ?e, "bad message from another worker");
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        c.dispatch();
        drop(c);
        if let Some(e) = bad {
            link.retire();
            link_down(&core, &link, &e.to_string());
            return;
        }
    };
    link_down(&core, &link, &why);
}

/// The link failed: if it is still the current link to its shard, that shard is down.
fn link_down(core: &Rc<RefCell<Core>>, link: &RemoteLink, why: &str) {
    let mut c = core.borrow_mut();
    if !c.link_is_current(link) || link.reported.replace(true) {
        return;
    }
    link.retire();
    tracing::warn!(
        core = link.from,
        shard = link.to,
        "link to shard {} lost ({why}): treating it as down",
        link.to
    );
    let now = c.now();
    c.shard.handle_shard_down(now, link.to);
    c.dispatch();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (from, to, bytes) in parts {
            encode_frame(&mut out, *from, *to, bytes);
        }
        out
    }

    /// Feeds `input` in pieces of `step` bytes to a deframer of the link 3 -> 5, and
    /// compares the frames (or the first error) with `expect`.
    fn check(input: &[u8], step: usize, expect: Result<Vec<&[u8]>, LinkError>) {
        let mut d = Deframer::new(3, 5);
        let mut got = Vec::new();
        let mut result = Ok(());
        'feed: for piece in input.chunks(step.max(1)) {
            d.push(piece);
            loop {
                match d.next_frame() {
                    Ok(Some(b)) => got.push(b),
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break 'feed;
                    }
                }
            }
        }
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        match (result, expect) {
            (Ok(()), Ok(expect)) => assert_eq!(got, expect, "step {step}"),
            (Err(e), Err(expect)) => assert_eq!(e, expect, "step {step}"),
            (r, e) => panic!("step {step}: got {r:?} after {got:?}, expected {e:?}"),
        }
    }

    /// A link whose writer never runs: the queue grows to the limit, the message past it
    /// breaks the link (queue dropped, socket shut down so the other end sees end of
    /// stream), and later messages are dropped. Below the limit, batches keep order.
    #[test]
    fn a_remote_link_queue_is_bounded_and_breaking_it_shuts_the_socket() {
        use std::io::Read;
        let (mine, mut theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        let link = RemoteLink::new(0, 1, 1, 10, mine);
        let msg = |b: u8| Bytes::from(vec![b; 4]);
        let mut batch = Vec::new();
        assert_eq!(link.send(msg(1)), Sent::Queued);
        assert_eq!(link.send(msg(2)), Sent::Queued);
        assert!(link.take_batch(&mut batch));
        assert_eq!(batch, frames(&[(0, 1, &[1; 4]), (0, 1, &[2; 4])]));
        let sent: Vec<Sent> = (3..7).map(|b| link.send(msg(b))).collect();
        assert_eq!(
            sent,
            [Sent::Queued, Sent::Queued, Sent::Broke, Sent::Dropped]
        );
        assert_eq!(link.queued.get(), 0);
        assert!(!link.take_batch(&mut batch));
        let mut rest = Vec::new();
        assert_eq!(theirs.read_to_end(&mut rest).expect("end of stream"), 0);
    }

    #[test]
    fn frames_round_trip_whatever_the_read_sizes() {
        let input = frames(&[(3, 5, b"one"), (3, 5, b""), (3, 5, &[7; 300])]);
        for step in [1, 2, 7, 8, 9, 64, 1000] {
            check(&input, step, Ok(vec![b"one", b"", &[7; 300]]));
        }
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let input = frames(&[(3, 5, b"hello")]);
        check(&input[..input.len() - 1], 4, Ok(vec![]));
        check(&input[..HEADER - 1], 4, Ok(vec![]));
    }

    #[test]
    fn headers_naming_other_shards_or_too_long_are_errors() {
        check(
            &frames(&[(4, 5, b"x")]),
            100,
            Err(LinkError::WrongSender {
                expected: 3,
                got: 4,
            }),
        );
        check(
            &frames(&[(3, 5, b"ok"), (3, 6, b"x")]),
            100,
            Err(LinkError::WrongReceiver {
                expected: 5,
                got: 6,
            }),
        );
        let mut long = vec![3, 0, 5, 0];
        long.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        check(&long, 100, Err(LinkError::TooLong(MAX_FRAME + 1)));
    }
}
