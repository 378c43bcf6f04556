//! One WAMP client session on glommio: connect, HELLO/WELCOME, SUBSCRIBE, PUBLISH,
//! REGISTER, CALL/YIELD, GOODBYE.
//!
//! A [`Session`] owns its socket and a [`Wire`]; reads go into one per-thread buffer
//! (glommio reads on readiness, so an idle session holds no read buffer and the load
//! generator itself stays small at many thousands of sessions). Every await point is
//! cancel-safe: a read hands its bytes to the wire within the poll that read them, and
//! writes drop exactly what was written, so a scenario may race [`Session::recv`] against a
//! timer. What it does not do: no reconnection, no authentication beyond anonymous, no
//! concurrency inside a session (one task drives it).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;
use switchyard_core::id::Id;
use switchyard_core::message::{
    CallOptions, CallResult, Goodbye, Hello, HelloDetails, Message, MessageType, Payload, Publish,
    PublishOptions, Register, Role, Roles, Subscribe, Yield,
};

use crate::sys;
use crate::target::{Target, Transport};
use crate::wire::{Wire, WireError};

/// The per-thread read buffer's size: one read takes at most this much.
const READ_CHUNK: usize = 64 * 1024;

/// Messages that arrive while a session waits for a specific reply are kept, up to this
/// many; a router that floods a session past it fails the session rather than growing it.
const MAX_PENDING: usize = 65_536;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Why a session failed; one variant per cause, for the "failures by cause" table.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// The router sent ABORT with this reason.
    Aborted(String),
    /// Too many messages arrived while waiting for a reply.
    Backlog,
    /// The router closed the TCP connection.
    Eof,
    /// The router answered a request with ERROR and this URI.
    Error(String),
    /// A socket call failed.
    Io(io::Error),
    /// A deadline passed.
    Timeout,
    /// A message that makes no sense at this point of the session.
    Unexpected(MessageType),
    /// The transport failed.
    Wire(WireError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Aborted(r) => write!(f, "ABORT {r}"),
            Self::Backlog => f.write_str("too many unexpected messages"),
            Self::Eof => f.write_str("router closed the connection"),
            Self::Error(u) => write!(f, "ERROR {u}"),
            Self::Io(e) => write!(f, "io: {e}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Unexpected(t) => write!(f, "unexpected {t:?}"),
            Self::Wire(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<WireError> for SessionError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

impl SessionError {
    /// A short, stable name for failure tables: the error kind, the URI or the OS error.
    pub fn cause(&self) -> String {
        match self {
            Self::Aborted(r) => format!("abort:{r}"),
            Self::Backlog => "backlog".into(),
            Self::Eof => "eof".into(),
            Self::Error(u) => format!("error:{u}"),
            Self::Io(e) => match e.raw_os_error() {
                Some(code) => format!("io:{}", io::Error::from_raw_os_error(code).kind()),
                None => format!("io:{}", e.kind()),
            },
            Self::Timeout => "timeout".into(),
            Self::Unexpected(t) => format!("unexpected:{t:?}"),
            Self::Wire(e) => format!("wire:{}", e.cause()),
        }
    }
}

/// A joined WAMP session.
pub struct Session {
    stream: TcpStream,
    wire: Wire,
    out: Vec<u8>,
    id: Id,
    next_request: u64,
    pending: VecDeque<Message>,
}

impl Session {
    /// Connects to `target` (from `source` if given), runs the transport handshake and
    /// joins the realm. `seed` seeds the WebSocket key and masking keys.
    pub async fn connect(
        target: &Target,
        source: Option<Ipv4Addr>,
        seed: u64,
    ) -> Result<Self, SessionError> {
        let stream = sys::connect_from(source, target.addr)?;
        let mut out = Vec::new();
        let wire = match &target.transport {
            Transport::WebSocket { path } => {
                let mut k = splitmix(seed).to_le_bytes().to_vec();
                k.extend_from_slice(&splitmix(seed ^ 0x5555).to_le_bytes());
                let mut key = [0u8; 16];
                key.copy_from_slice(&k);
                Wire::websocket(
                    target.serializer,
                    &target.host_header(),
                    path,
                    key,
                    splitmix(seed ^ 0xaaaa),
                    &mut out,
                )
            }
            Transport::RawSocket => Wire::rawsocket(target.serializer, &mut out),
        };
        let mut s = Self {
            stream,
            wire,
            out,
            // Replaced by WELCOME's id before the session is handed out.
            id: Id::MIN,
            next_request: 0,
            pending: VecDeque::new(),
        };
        s.flush().await?;
        while !s.wire.is_open() {
            if let Some(Err(e)) = s.wire.poll_message() {
                return Err(e.into());
            }
            s.fill().await?;
        }
        let roles = Roles::default()
            .with(Role::Publisher, &[])
            .with(Role::Subscriber, &[])
            .with(Role::Caller, &[])
            .with(Role::Callee, &[]);
        s.send(&Message::Hello(Hello {
            realm: target.realm.clone(),
            details: HelloDetails {
                roles,
                ..HelloDetails::default()
            },
        }))
        .await?;
        match s.recv().await? {
            Message::Welcome(w) => s.id = w.session,
            Message::Abort(a) => return Err(SessionError::Aborted(a.reason)),
            other => return Err(SessionError::Unexpected(other.message_type())),
        }
        Ok(s)
    }

    /// The session id WELCOME gave.
    pub fn id(&self) -> Id {
        self.id
    }

    /// A fresh request id (sequential from 1, as the spec's session scope allows).
    pub fn next_request(&mut self) -> Id {
        self.next_request = self.next_request % (1 << 53) + 1;
        // The counter stays within [1, 2^53], which is exactly Id's range.
        Id::new(self.next_request).unwrap_or(Id::MIN)
    }

    /// Encodes `message` into the output buffer without writing it (see [`Self::flush`]).
    pub fn queue(&mut self, message: &Message) -> Result<(), SessionError> {
        Ok(self.wire.send(message, &mut self.out)?)
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued. Cancel-safe: written bytes leave the buffer as they go.
    pub async fn flush(&mut self) -> Result<(), SessionError> {
        while !self.out.is_empty() {
            let n = self.stream.write(&self.out).await?;
            if n == 0 {
                return Err(SessionError::Eof);
            }
            self.out.drain(..n);
        }
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Queues and writes one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        self.queue(message)?;
        self.flush().await
    }

    /// The next message from the router. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Message, SessionError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            if let Some(r) = self.wire.poll_message() {
                return Ok(r?);
            }
            self.fill().await?;
            if !self.out.is_empty() {
                // Pongs and close echoes the transport owes the router.
                self.flush().await?;
            }
        }
    }

    /// A message already read and decoded, without waiting or touching the socket: lets a
    /// scenario handle every message one read brought before it writes its answers once.
    pub fn try_recv(&mut self) -> Option<Result<Message, SessionError>> {
        if let Some(m) = self.pending.pop_front() {
            return Some(Ok(m));
        }
        self.wire
            .poll_message()
            .map(|r| r.map_err(SessionError::from))
    }

    /// The next message, or `None` once `deadline_ns` (see [`sys::now_ns`]) has passed.
    pub async fn recv_until(&mut self, deadline_ns: u64) -> Result<Option<Message>, SessionError> {
        // A message already decoded needs no timer: arming and cancelling one per message
        // cost more than the message itself at high rates.
        if let Some(r) = self.try_recv() {
            return r.map(Some);
        }
        let wait = deadline_ns.saturating_sub(sys::now_ns());
        futures_lite::future::or(async { self.recv().await.map(Some) }, async {
            glommio::timer::sleep(Duration::from_nanos(wait)).await;
            Ok(None)
        })
        .await
    }

    async fn fill(&mut self) -> Result<(), SessionError> {
        let stream = &mut self.stream;
        let wire = &mut self.wire;
        let out = &mut self.out;
        let n = poll_fn(|cx| {
            READ_BUF.with(|b| {
                let mut b = b.borrow_mut();
                match Pin::new(&mut *stream).poll_read(cx, &mut b[..]) {
                    Poll::Ready(Ok(n)) => {
                        wire.handle_read(&b[..n], out);
                        Poll::Ready(Ok(n))
                    }
                    other => other,
                }
            })
        })
        .await?;
        if n == 0 {
            if let Some(Err(e)) = self.wire.poll_message() {
                return Err(e.into());
            }
            return Err(SessionError::Eof);
        }
        Ok(())
    }

    /// Waits for the reply to `request` of type `want`, keeping other messages for
    /// [`Self::recv`]. An ERROR for the request becomes [`SessionError::Error`].
    async fn reply(&mut self, request: Id, want: MessageType) -> Result<Message, SessionError> {
        loop {
            let m = match self.wire.poll_message() {
                Some(r) => r?,
                None => {
                    self.fill().await?;
                    continue;
                }
            };
            let matches = match &m {
                Message::Subscribed(r) => r.request == request,
                Message::Registered(r) => r.request == request,
                Message::Published(r) => r.request == request,
                Message::Result(r) => r.request == request,
                Message::Goodbye(_) => want == MessageType::Goodbye,
                Message::Error(e) if e.request == request => {
                    return Err(SessionError::Error(e.error.clone()))
                }
                Message::Abort(a) => return Err(SessionError::Aborted(a.reason.clone())),
                _ => false,
            };
            if matches && m.message_type() == want {
                return Ok(m);
            }
            if self.pending.len() >= MAX_PENDING {
                return Err(SessionError::Backlog);
            }
            self.pending.push_back(m);
        }
    }

    /// Subscribes to `topic` (exact match); returns the subscription id.
    pub async fn subscribe(&mut self, topic: &str) -> Result<Id, SessionError> {
        let request = self.next_request();
        self.send(&Message::Subscribe(Subscribe {
            request,
            options: Default::default(),
            topic: topic.to_owned(),
        }))
        .await?;
        match self.reply(request, MessageType::Subscribed).await? {
            Message::Subscribed(s) => Ok(s.subscription),
            other => Err(SessionError::Unexpected(other.message_type())),
        }
    }

    /// Registers `procedure` (exact match, single); returns the registration id.
    pub async fn register(&mut self, procedure: &str) -> Result<Id, SessionError> {
        let request = self.next_request();
        self.send(&Message::Register(Register {
            request,
            options: Default::default(),
            procedure: procedure.to_owned(),
        }))
        .await?;
        match self.reply(request, MessageType::Registered).await? {
            Message::Registered(r) => Ok(r.registration),
            other => Err(SessionError::Unexpected(other.message_type())),
        }
    }

    /// Queues a PUBLISH (not written until [`Self::flush`]); returns its request id.
    pub fn queue_publish(
        &mut self,
        topic: &str,
        payload: Payload,
        acknowledge: bool,
    ) -> Result<Id, SessionError> {
        let request = self.next_request();
        let options = PublishOptions {
            acknowledge: acknowledge.then_some(true),
            ..PublishOptions::default()
        };
        self.queue(&Message::Publish(Publish {
            request,
            options,
            topic: topic.to_owned(),
            payload,
        }))?;
        Ok(request)
    }

    /// Publishes with acknowledgement and waits for PUBLISHED.
    pub async fn publish_acknowledged(
        &mut self,
        topic: &str,
        payload: Payload,
    ) -> Result<Id, SessionError> {
        let request = self.queue_publish(topic, payload, true)?;
        self.flush().await?;
        match self.reply(request, MessageType::Published).await? {
            Message::Published(p) => Ok(p.publication),
            other => Err(SessionError::Unexpected(other.message_type())),
        }
    }

    /// Queues a CALL; returns its request id.
    pub fn queue_call(&mut self, procedure: &str, payload: Payload) -> Result<Id, SessionError> {
        let request = self.next_request();
        self.queue(&Message::Call(switchyard_core::message::Call {
            request,
            options: CallOptions::default(),
            procedure: procedure.to_owned(),
            payload,
        }))?;
        Ok(request)
    }

    /// Calls `procedure` and waits for its RESULT.
    pub async fn call(
        &mut self,
        procedure: &str,
        payload: Payload,
    ) -> Result<CallResult, SessionError> {
        let request = self.queue_call(procedure, payload)?;
        self.flush().await?;
        match self.reply(request, MessageType::Result).await? {
            Message::Result(r) => Ok(r),
            other => Err(SessionError::Unexpected(other.message_type())),
        }
    }

    /// Queues the YIELD answering invocation `request` with `payload`.
    pub fn queue_yield(&mut self, request: Id, payload: Payload) -> Result<(), SessionError> {
        self.queue(&Message::Yield(Yield {
            request,
            options: Default::default(),
            payload,
        }))
    }

    /// Leaves the realm: GOODBYE, waits (until `deadline_ns`) for the router's GOODBYE,
    /// then closes the transport.
    pub async fn goodbye(mut self, deadline_ns: u64) -> Result<(), SessionError> {
        self.send(&Message::Goodbye(Goodbye {
            details: Default::default(),
            reason: "wamp.close.close_realm".into(),
        }))
        .await?;
        loop {
            match self.recv_until(deadline_ns).await? {
                Some(Message::Goodbye(_)) => break,
                Some(_) => {}
                None => return Err(SessionError::Timeout),
            }
        }
        self.wire.close(&mut self.out);
        self.flush().await
    }
}

/// splitmix64: spreads one seed into well-mixed key material.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
