//! A small fake WAMP router for the load generator's tests: std threads, the io crate's
//! server roles, the core codec, and just enough broker and dealer to answer HELLO,
//! SUBSCRIBE, PUBLISH, REGISTER, CALL/YIELD, GOODBYE and `wamp.session.count`.
//!
//! It can drop events on purpose ([`Options::drop_event`]) so tests can prove that loss is
//! detected. What it does not do: no pattern matching, no authorization, no limits; it is
//! not the Switchyard router and says nothing about one.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::id::Id;
use switchyard_core::message::*;
use switchyard_io::rawsocket::{self, RawSocketConn};
use switchyard_io::ws::conn::{self, Connection};
use switchyard_io::ws::handshake::{parse_request, HandshakeConfig};

/// The server end of one transport, sans-IO.
pub enum ServerEnd {
    Undecided(Vec<u8>),
    Ws(Box<Connection>, Serializer),
    Raw(Box<RawSocketConn>, Option<Serializer>),
    Failed,
}

impl ServerEnd {
    pub fn new() -> Self {
        Self::Undecided(Vec::new())
    }

    pub fn serializer(&self) -> Option<Serializer> {
        match self {
            Self::Ws(_, s) => Some(*s),
            Self::Raw(_, s) => *s,
            _ => None,
        }
    }

    /// Feeds bytes; returns whole WAMP frames; appends bytes to send to `out`.
    pub fn handle_read(&mut self, data: &[u8], out: &mut Vec<u8>) -> Vec<Bytes> {
        let mut frames = Vec::new();
        if let Self::Undecided(buf) = self {
            buf.extend_from_slice(data);
            if buf.is_empty() {
                return frames;
            }
            if rawsocket::is_rawsocket(buf[0]) {
                let rest = std::mem::take(buf);
                let conn =
                    RawSocketConn::new(rawsocket::Role::Server, rawsocket::Config::default());
                *self = Self::Raw(Box::new(conn), None);
                return self.handle_read(&rest, out);
            }
            match parse_request(buf, &HandshakeConfig::default()) {
                Ok(None) => return frames,
                Ok(Some(a)) => {
                    out.extend_from_slice(&a.response);
                    let ser = match a.subprotocol.as_deref() {
                        Some("wamp.2.msgpack") => Serializer::MsgPack,
                        _ => Serializer::Json,
                    };
                    let rest = buf[a.consumed..].to_vec();
                    let c = Connection::new(conn::Role::Server, conn::Config::default(), None);
                    *self = Self::Ws(Box::new(c), ser);
                    return self.handle_read(&rest, out);
                }
                Err(e) => {
                    out.extend_from_slice(&e.response());
                    *self = Self::Failed;
                    return frames;
                }
            }
        }
        match self {
            Self::Ws(c, _) => {
                c.handle_read(data);
                while let Some(ev) = c.poll_event() {
                    if let conn::Event::Message { data, .. } = ev {
                        frames.push(data);
                    }
                }
                c.poll_transmit(out);
            }
            Self::Raw(c, ser) => {
                c.handle_read(data);
                while let Some(ev) = c.poll_event() {
                    match ev {
                        rawsocket::Event::Open { serializer, .. } => {
                            *ser = Some(match serializer {
                                rawsocket::Serializer::Json => Serializer::Json,
                                rawsocket::Serializer::MsgPack => Serializer::MsgPack,
                            })
                        }
                        rawsocket::Event::Message(m) => frames.push(m),
                        _ => {}
                    }
                }
                c.poll_transmit(out);
            }
            _ => {}
        }
        frames
    }

    pub fn send(&mut self, msg: &Message, out: &mut Vec<u8>) {
        let Some(ser) = self.serializer() else { return };
        let mut buf = Vec::new();
        codec::encode(ser, msg, &mut buf).unwrap();
        match self {
            Self::Ws(c, _) => c.send_message(ser == Serializer::Json, &buf, out),
            Self::Raw(c, _) => c.send_message(&buf, out).unwrap(),
            _ => {}
        }
    }
}

/// Fault injection.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Drop the n-th EVENT (counting from 1, over all deliveries) on its way out.
    pub drop_event: Option<u64>,
}

struct Peer {
    end: ServerEnd,
    stream: TcpStream,
}

#[derive(Default)]
struct Shared {
    next_id: u64,
    sessions: HashMap<u64, Arc<Mutex<Peer>>>,
    subs: HashMap<String, (u64, Vec<u64>)>,
    regs: HashMap<String, (u64, u64)>,
    reg_by_id: HashMap<u64, String>,
    invocations: HashMap<u64, (u64, Id)>,
}

/// A running fake router; stops accepting when dropped.
pub struct FakeRouter {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub events_sent: Arc<AtomicU64>,
}

impl Drop for FakeRouter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl FakeRouter {
    pub fn start(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let events_sent = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop2, ev2) = (stop.clone(), events_sent.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_nodelay(true).unwrap();
                        let (sh, ev, op, st) =
                            (shared.clone(), ev2.clone(), options.clone(), stop2.clone());
                        thread::spawn(move || serve(s, sh, ev, op, st));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            events_sent,
        }
    }

    pub fn url(&self, ws: bool) -> String {
        if ws {
            format!("ws://{}/ws", self.addr)
        } else {
            format!("rs://{}", self.addr)
        }
    }
}

fn id(v: u64) -> Id {
    Id::new(v).unwrap()
}

fn send(peer: &Arc<Mutex<Peer>>, msg: &Message) {
    let mut p = peer.lock().unwrap();
    let mut out = Vec::new();
    p.end.send(msg, &mut out);
    let _ = p.stream.write_all(&out);
}

fn serve(
    stream: TcpStream,
    shared: Arc<Mutex<Shared>>,
    events: Arc<AtomicU64>,
    options: Options,
    stop: Arc<AtomicBool>,
) {
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let peer = Arc::new(Mutex::new(Peer {
        end: ServerEnd::new(),
        stream,
    }));
    let mut session = 0u64;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let (frames, ser) = {
            let mut p = peer.lock().unwrap();
            let mut out = Vec::new();
            let frames = p.end.handle_read(&buf[..n], &mut out);
            let _ = p.stream.write_all(&out);
            (frames, p.end.serializer())
        };
        for f in frames {
            let Ok(msg) = codec::decode(ser.unwrap(), f) else {
                return;
            };
            handle(msg, &mut session, &peer, &shared, &events, &options);
        }
    }
    let mut sh = shared.lock().unwrap();
    sh.sessions.remove(&session);
    for (_, subs) in sh.subs.values_mut() {
        subs.retain(|s| *s != session);
    }
    sh.regs.retain(|_, (_, callee)| *callee != session);
}

fn handle(
    msg: Message,
    session: &mut u64,
    peer: &Arc<Mutex<Peer>>,
    shared: &Arc<Mutex<Shared>>,
    events: &AtomicU64,
    options: &Options,
) {
    match msg {
        Message::Hello(_) => {
            let mut sh = shared.lock().unwrap();
            sh.next_id += 1;
            *session = sh.next_id;
            sh.sessions.insert(*session, peer.clone());
            drop(sh);
            let details = WelcomeDetails {
                roles: Roles::default()
                    .with(Role::Broker, &[])
                    .with(Role::Dealer, &[]),
                ..Default::default()
            };
            send(
                peer,
                &Message::Welcome(Welcome {
                    session: id(*session),
                    details,
                }),
            );
        }
        Message::Subscribe(s) => {
            let mut sh = shared.lock().unwrap();
            sh.next_id += 1;
            let fresh = sh.next_id;
            let entry = sh.subs.entry(s.topic).or_insert((fresh, Vec::new()));
            entry.1.push(*session);
            let sub = entry.0;
            drop(sh);
            send(
                peer,
                &Message::Subscribed(Subscribed {
                    request: s.request,
                    subscription: id(sub),
                }),
            );
        }
        Message::Publish(p) => {
            let (targets, sub, publication) = {
                let mut sh = shared.lock().unwrap();
                sh.next_id += 1;
                let publication = sh.next_id;
                let (sub, list) = sh.subs.get(&p.topic).cloned().unwrap_or((1, Vec::new()));
                let targets: Vec<_> = list
                    .iter()
                    .filter(|s| **s != *session)
                    .filter_map(|s| sh.sessions.get(s).cloned())
                    .collect();
                (targets, sub, publication)
            };
            for t in targets {
                let n = events.fetch_add(1, Ordering::SeqCst) + 1;
                if options.drop_event == Some(n) {
                    continue;
                }
                send(
                    &t,
                    &Message::Event(Event {
                        subscription: id(sub),
                        publication: id(publication),
                        details: Default::default(),
                        payload: p.payload.clone(),
                    }),
                );
            }
            if p.options.acknowledge == Some(true) {
                send(
                    peer,
                    &Message::Published(Published {
                        request: p.request,
                        publication: id(publication),
                    }),
                );
            }
        }
        Message::Register(r) => {
            let mut sh = shared.lock().unwrap();
            if sh.regs.contains_key(&r.procedure) {
                drop(sh);
                send(
                    peer,
                    &error(
                        MessageType::Register,
                        r.request,
                        "wamp.error.procedure_already_exists",
                    ),
                );
                return;
            }
            sh.next_id += 1;
            let reg = sh.next_id;
            sh.regs.insert(r.procedure.clone(), (reg, *session));
            sh.reg_by_id.insert(reg, r.procedure);
            drop(sh);
            send(
                peer,
                &Message::Registered(Registered {
                    request: r.request,
                    registration: id(reg),
                }),
            );
        }
        Message::Call(c) if c.procedure == "wamp.session.count" => {
            let n = shared.lock().unwrap().sessions.len();
            let payload = Payload::new(Serializer::Json, Some(Bytes::from(format!("[{n}]"))), None);
            let payload = match peer.lock().unwrap().end.serializer() {
                Some(Serializer::MsgPack) => {
                    codec::transcode(&payload, Serializer::MsgPack).unwrap()
                }
                _ => payload,
            };
            send(
                peer,
                &Message::Result(CallResult {
                    request: c.request,
                    details: Default::default(),
                    payload,
                }),
            );
        }
        Message::Call(c) => {
            let target = {
                let mut sh = shared.lock().unwrap();
                let Some(&(reg, callee)) = sh.regs.get(&c.procedure) else {
                    drop(sh);
                    send(
                        peer,
                        &error(MessageType::Call, c.request, "wamp.error.no_such_procedure"),
                    );
                    return;
                };
                sh.next_id += 1;
                let inv = sh.next_id;
                sh.invocations.insert(inv, (*session, c.request));
                sh.sessions.get(&callee).cloned().map(|p| (p, reg, inv))
            };
            if let Some((p, reg, inv)) = target {
                send(
                    &p,
                    &Message::Invocation(Invocation {
                        request: id(inv),
                        registration: id(reg),
                        details: Default::default(),
                        payload: c.payload,
                    }),
                );
            }
        }
        Message::Yield(y) => {
            let target = {
                let mut sh = shared.lock().unwrap();
                sh.invocations
                    .remove(&y.request.get())
                    .and_then(|(caller, req)| sh.sessions.get(&caller).cloned().map(|p| (p, req)))
            };
            if let Some((p, req)) = target {
                send(
                    &p,
                    &Message::Result(CallResult {
                        request: req,
                        details: Default::default(),
                        payload: y.payload,
                    }),
                );
            }
        }
        Message::Goodbye(_) => {
            send(
                peer,
                &Message::Goodbye(Goodbye {
                    details: Default::default(),
                    reason: "wamp.close.goodbye_and_out".into(),
                }),
            );
        }
        _ => {}
    }
}

fn error(t: MessageType, request: Id, uri: &str) -> Message {
    Message::Error(ErrorMessage {
        request_type: t,
        request,
        details: Default::default(),
        error: uri.into(),
        payload: Payload::empty(),
    })
}
