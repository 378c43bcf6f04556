//! The element order of every WAMP message, written once for both codecs.
//!
//! Decoding happens in two steps. A codec first splits the frame's top-level list into at
//! most [`MAX_ELEMENTS`] encoded elements ([`Elements`]), checking syntax, truncation and
//! depth as it skips over them; then [`build`] reads the message type and turns each
//! element into its field through the [`Element`] trait. Splitting first means that a
//! structural error found late in the frame still reports the message type and request id
//! read from the elements before it. Encoding goes through [`Writer`].
//!
//! This module knows no wire format.

use bytes::Bytes;

use crate::codec::error::{DecodeError, EncodeError, Field, FrameError, MessageError};
use crate::codec::fields::DictModel;
use crate::codec::Serializer;
use crate::id::Id;
use crate::message::{
    Abort, Authenticate, Call, CallResult, Cancel, Challenge, Dict, ErrorMessage, Event, Goodbye,
    Hello, Interrupt, Invocation, Message, MessageType, Payload, Publish, Published, Register,
    Registered, Subscribe, Subscribed, Unregister, Unregistered, Unsubscribe, Unsubscribed,
    Welcome, Yield,
};

/// The longest WAMP message (ERROR) has seven elements.
pub(crate) const MAX_ELEMENTS: usize = 7;

/// One encoded element of a message's top-level list, borrowed from the frame.
pub(crate) trait Element: Copy + Default {
    /// The serializer the element is encoded in.
    const SERIALIZER: Serializer;
    /// The element as a non-negative integer.
    fn uint(self, field: Field) -> Result<u64, MessageError>;
    /// The element as a string.
    fn string(self, field: Field) -> Result<String, MessageError>;
    /// The element as a dictionary, decoded into `M`.
    fn dict<M: DictModel>(self, field: Field) -> Result<M, MessageError>;
    /// The element as raw payload bytes of the given kind, sliced from `frame` without
    /// copying.
    fn payload(self, frame: &Bytes, field: Field, kind: PayloadKind)
        -> Result<Bytes, MessageError>;
}

/// What a payload element may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadKind {
    /// `args` followed by `kwargs`: a list.
    Args,
    /// `args` as the last element: a list, or (payload passthru / end-to-end encryption
    /// as some clients send it) the opaque binary or string payload itself.
    ArgsOrOpaque,
    /// `kwargs`: a dictionary.
    Kwargs,
}

/// A structural problem a codec found while splitting the top-level list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Structural {
    /// The frame ends early.
    Truncated,
    /// The frame is not well-formed.
    Syntax,
    /// Bytes follow the top-level list.
    TrailingBytes,
    /// The element at this index nests deeper than `MAX_DEPTH`.
    TooDeep(usize),
}

/// The top-level list of a frame, split into encoded elements.
pub(crate) struct Elements<E> {
    /// The first `len` elements.
    pub(crate) items: [E; MAX_ELEMENTS],
    /// How many elements were split off.
    pub(crate) len: usize,
    /// The list has more than `MAX_ELEMENTS` elements.
    pub(crate) overflow: bool,
    /// Splitting stopped at this problem; `items[..len]` are still sound.
    pub(crate) error: Option<Structural>,
}

impl<E: Element> Elements<E> {
    pub(crate) fn new() -> Self {
        Self {
            items: [E::default(); MAX_ELEMENTS],
            len: 0,
            overflow: false,
            error: None,
        }
    }

    /// Appends an element; the caller stops at `MAX_ELEMENTS` and sets `overflow`.
    pub(crate) fn push(&mut self, e: E) {
        debug_assert!(self.len < MAX_ELEMENTS);
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = e;
            self.len += 1;
        }
    }
}

/// The names of a message's elements in order, and how many are required.
fn shape(ty: MessageType) -> (&'static [Field], usize) {
    use MessageType as T;
    const PAYLOAD: usize = 2;
    let names: &'static [Field] = match ty {
        T::Hello => &["type", "realm", "details"],
        T::Welcome => &["type", "session", "details"],
        T::Abort | T::Goodbye => &["type", "details", "reason"],
        T::Challenge => &["type", "authmethod", "extra"],
        T::Authenticate => &["type", "signature", "extra"],
        T::Error => &[
            "type",
            "request_type",
            "request",
            "details",
            "error",
            "args",
            "kwargs",
        ],
        T::Publish => &["type", "request", "options", "topic", "args", "kwargs"],
        T::Published => &["type", "request", "publication"],
        T::Subscribe => &["type", "request", "options", "topic"],
        T::Subscribed => &["type", "request", "subscription"],
        T::Unsubscribe => &["type", "request", "subscription"],
        T::Unsubscribed | T::Unregistered => &["type", "request", "details"],
        T::Event => &[
            "type",
            "subscription",
            "publication",
            "details",
            "args",
            "kwargs",
        ],
        T::Call => &["type", "request", "options", "procedure", "args", "kwargs"],
        T::Cancel | T::Interrupt => &["type", "request", "options"],
        T::Result => &["type", "request", "details", "args", "kwargs"],
        T::Register => &["type", "request", "options", "procedure"],
        T::Registered => &["type", "request", "registration"],
        T::Unregister => &["type", "request", "registration"],
        T::Invocation => &[
            "type",
            "request",
            "registration",
            "details",
            "args",
            "kwargs",
        ],
        T::Yield => &["type", "request", "options", "args", "kwargs"],
    };
    let required = match ty {
        T::Error | T::Publish | T::Event | T::Call | T::Result | T::Invocation | T::Yield => {
            names.len() - PAYLOAD
        }
        T::Unsubscribed | T::Unregistered => 2,
        _ => names.len(),
    };
    (names, required)
}

/// Turns split elements into a message.
pub(crate) fn build<E: Element>(els: &Elements<E>, frame: &Bytes) -> Result<Message, DecodeError> {
    let items = &els.items[..els.len.min(MAX_ELEMENTS)];
    let Some(&first) = items.first() else {
        return Err(DecodeError::Frame(match els.error {
            Some(Structural::Truncated) => FrameError::Truncated,
            Some(_) => FrameError::Syntax,
            None => FrameError::EmptyList,
        }));
    };
    let code = first
        .uint("type")
        .map_err(|_| DecodeError::Frame(FrameError::TypeNotAnInteger))?;
    let ty =
        MessageType::from_code(code).ok_or(DecodeError::Frame(FrameError::UnknownType(code)))?;
    let request = match (ty.has_request_id(), items.get(1)) {
        (true, Some(e)) => e.uint("request").ok().and_then(Id::new),
        _ => None,
    };
    let fail = |error| DecodeError::Message {
        message_type: ty,
        request,
        error,
    };
    let (names, required) = shape(ty);
    if let Some(s) = els.error {
        let name = |i: usize| names.get(i).copied().unwrap_or("kwargs");
        return Err(fail(match s {
            Structural::Truncated => MessageError::Truncated,
            Structural::Syntax => MessageError::Syntax,
            Structural::TrailingBytes => MessageError::TrailingBytes,
            Structural::TooDeep(i) => MessageError::TooDeep { field: name(i) },
        }));
    }
    if els.overflow || items.len() > names.len() {
        return Err(fail(MessageError::TooManyElements));
    }
    if items.len() < required {
        return Err(fail(MessageError::MissingField {
            field: names[items.len()],
        }));
    }
    let r = Reader {
        items,
        names,
        frame,
    };
    read(ty, &r).map_err(fail)
}

/// Field access by position, naming the field in errors.
struct Reader<'a, E> {
    items: &'a [E],
    names: &'static [Field],
    frame: &'a Bytes,
}

impl<E: Element> Reader<'_, E> {
    /// The element at `i`, present because `build` checked the required count.
    fn at(&self, i: usize) -> Result<(E, Field), MessageError> {
        let name = self.names.get(i).copied().unwrap_or("kwargs");
        match self.items.get(i) {
            Some(&e) => Ok((e, name)),
            None => Err(MessageError::MissingField { field: name }),
        }
    }

    fn id(&self, i: usize) -> Result<Id, MessageError> {
        let (e, field) = self.at(i)?;
        match e.uint(field) {
            Ok(v) => Id::new(v).ok_or(MessageError::IdOutOfRange { field, value: v }),
            Err(MessageError::IntegerOutOfRange { .. }) => Err(MessageError::IdOutOfRange {
                field,
                value: u64::MAX,
            }),
            Err(e) => Err(e),
        }
    }

    /// An id where `0` means "none" (the router-initiated UNSUBSCRIBED/UNREGISTERED).
    fn id_or_zero(&self, i: usize) -> Result<Option<Id>, MessageError> {
        let (e, field) = self.at(i)?;
        match e.uint(field)? {
            0 => Ok(None),
            v => Id::new(v)
                .map(Some)
                .ok_or(MessageError::IdOutOfRange { field, value: v }),
        }
    }

    fn string(&self, i: usize) -> Result<String, MessageError> {
        let (e, field) = self.at(i)?;
        e.string(field)
    }

    fn dict<M: DictModel>(&self, i: usize) -> Result<M, MessageError> {
        let (e, field) = self.at(i)?;
        e.dict(field)
    }

    fn opt_dict<M: DictModel>(&self, i: usize) -> Result<Option<M>, MessageError> {
        if i < self.items.len() {
            self.dict(i).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `args` at `i` and `kwargs` at `i + 1`, each optional.
    fn payload(&self, i: usize, serializer: Serializer) -> Result<Payload, MessageError> {
        let part = |i: usize, kind: PayloadKind| -> Result<Option<Bytes>, MessageError> {
            match self.items.get(i) {
                Some(&e) => e
                    .payload(
                        self.frame,
                        self.names.get(i).copied().unwrap_or("kwargs"),
                        kind,
                    )
                    .map(Some),
                None => Ok(None),
            }
        };
        let args_kind = if i + 1 < self.items.len() {
            PayloadKind::Args
        } else {
            PayloadKind::ArgsOrOpaque
        };
        let args = part(i, args_kind)?;
        let kwargs = part(i + 1, PayloadKind::Kwargs)?;
        Ok(Payload::new(serializer, args, kwargs))
    }
}

fn read<E: Element>(ty: MessageType, r: &Reader<'_, E>) -> Result<Message, MessageError> {
    use MessageType as T;
    let ser = E::SERIALIZER;
    Ok(match ty {
        T::Hello => Message::Hello(Hello {
            realm: r.string(1)?,
            details: r.dict(2)?,
        }),
        T::Welcome => Message::Welcome(Welcome {
            session: r.id(1)?,
            details: r.dict(2)?,
        }),
        T::Abort => Message::Abort(Abort {
            details: r.dict(1)?,
            reason: r.string(2)?,
        }),
        T::Challenge => Message::Challenge(Challenge {
            authmethod: r.string(1)?,
            extra: r.dict(2)?,
        }),
        T::Authenticate => Message::Authenticate(Authenticate {
            signature: r.string(1)?,
            extra: r.dict(2)?,
        }),
        T::Goodbye => Message::Goodbye(Goodbye {
            details: r.dict(1)?,
            reason: r.string(2)?,
        }),
        T::Error => {
            let (e, field) = r.at(1)?;
            let code = e.uint(field)?;
            let request_type = MessageType::from_code(code)
                .filter(|t| t.has_request_id() || *t == T::Invocation)
                .ok_or(MessageError::UnknownRequestType(code))?;
            Message::Error(ErrorMessage {
                request_type,
                request: r.id(2)?,
                details: r.dict(3)?,
                error: r.string(4)?,
                payload: r.payload(5, ser)?,
            })
        }
        T::Publish => Message::Publish(Publish {
            request: r.id(1)?,
            options: r.dict(2)?,
            topic: r.string(3)?,
            payload: r.payload(4, ser)?,
        }),
        T::Published => Message::Published(Published {
            request: r.id(1)?,
            publication: r.id(2)?,
        }),
        T::Subscribe => Message::Subscribe(Subscribe {
            request: r.id(1)?,
            options: r.dict(2)?,
            topic: r.string(3)?,
        }),
        T::Subscribed => Message::Subscribed(Subscribed {
            request: r.id(1)?,
            subscription: r.id(2)?,
        }),
        T::Unsubscribe => Message::Unsubscribe(Unsubscribe {
            request: r.id(1)?,
            subscription: r.id(2)?,
        }),
        T::Unsubscribed => Message::Unsubscribed(Unsubscribed {
            request: r.id_or_zero(1)?,
            details: r.opt_dict::<Dict>(2)?,
        }),
        T::Event => Message::Event(Event {
            subscription: r.id(1)?,
            publication: r.id(2)?,
            details: r.dict(3)?,
            payload: r.payload(4, ser)?,
        }),
        T::Call => Message::Call(Call {
            request: r.id(1)?,
            options: r.dict(2)?,
            procedure: r.string(3)?,
            payload: r.payload(4, ser)?,
        }),
        T::Cancel => Message::Cancel(Cancel {
            request: r.id(1)?,
            options: r.dict(2)?,
        }),
        T::Result => Message::Result(CallResult {
            request: r.id(1)?,
            details: r.dict(2)?,
            payload: r.payload(3, ser)?,
        }),
        T::Register => Message::Register(Register {
            request: r.id(1)?,
            options: r.dict(2)?,
            procedure: r.string(3)?,
        }),
        T::Registered => Message::Registered(Registered {
            request: r.id(1)?,
            registration: r.id(2)?,
        }),
        T::Unregister => Message::Unregister(Unregister {
            request: r.id(1)?,
            registration: r.id(2)?,
        }),
        T::Unregistered => Message::Unregistered(Unregistered {
            request: r.id_or_zero(1)?,
            details: r.opt_dict::<Dict>(2)?,
        }),
        T::Invocation => Message::Invocation(Invocation {
            request: r.id(1)?,
            registration: r.id(2)?,
            details: r.dict(3)?,
            payload: r.payload(4, ser)?,
        }),
        T::Interrupt => Message::Interrupt(Interrupt {
            request: r.id(1)?,
            options: r.dict(2)?,
        }),
        T::Yield => Message::Yield(Yield {
            request: r.id(1)?,
            options: r.dict(2)?,
            payload: r.payload(3, ser)?,
        }),
    })
}

/// A codec's output primitives; [`write_message`] drives them.
pub(crate) trait Writer {
    /// Starts a list of `len` elements.
    fn begin_list(&mut self, len: usize);
    /// Ends the list.
    fn end_list(&mut self);
    /// Goes between two elements.
    fn separator(&mut self);
    /// Writes a non-negative integer.
    fn uint(&mut self, v: u64);
    /// Writes a string.
    fn string(&mut self, s: &str);
    /// Writes a dictionary.
    fn dict<M: DictModel>(&mut self, m: &M) -> Result<(), EncodeError>;
    /// Copies already encoded bytes.
    fn raw(&mut self, bytes: &[u8]);
}

/// Writes a list whose separators are placed automatically (the type comes first, so
/// every later element is preceded by one).
struct List<'w, W> {
    w: &'w mut W,
}

impl<'w, W: Writer> List<'w, W> {
    fn new(w: &'w mut W, ty: MessageType, len: usize) -> Self {
        w.begin_list(len);
        w.uint(ty.code());
        Self { w }
    }

    fn next(&mut self) -> &mut W {
        self.w.separator();
        self.w
    }

    fn uint(&mut self, v: u64) -> &mut Self {
        self.next().uint(v);
        self
    }

    fn id(&mut self, id: Id) -> &mut Self {
        self.uint(id.get())
    }

    fn string(&mut self, s: &str) -> &mut Self {
        self.next().string(s);
        self
    }

    fn dict<M: DictModel>(&mut self, m: &M) -> Result<&mut Self, EncodeError> {
        self.next().dict(m)?;
        Ok(self)
    }

    fn payload(&mut self, p: &Payload) -> &mut Self {
        if let Some(a) = p.args() {
            self.next().raw(a);
        }
        if let Some(k) = p.kwargs() {
            self.next().raw(k);
        }
        self
    }

    fn end(&mut self) {
        self.w.end_list();
    }
}

/// The number of payload elements on the wire.
fn parts(p: &Payload) -> usize {
    usize::from(p.args().is_some()) + usize::from(p.kwargs().is_some())
}

/// Writes `m`; the caller has checked that payloads are in the writer's serializer.
pub(crate) fn write_message<W: Writer>(w: &mut W, m: &Message) -> Result<(), EncodeError> {
    let ty = m.message_type();
    match m {
        Message::Hello(m) => List::new(w, ty, 3).string(&m.realm).dict(&m.details)?.end(),
        Message::Welcome(m) => List::new(w, ty, 3).id(m.session).dict(&m.details)?.end(),
        Message::Abort(m) => List::new(w, ty, 3)
            .dict(&m.details)?
            .string(&m.reason)
            .end(),
        Message::Challenge(m) => List::new(w, ty, 3)
            .string(&m.authmethod)
            .dict(&m.extra)?
            .end(),
        Message::Authenticate(m) => {
            List::new(w, ty, 3)
                .string(&m.signature)
                .dict(&m.extra)?
                .end();
        }
        Message::Goodbye(m) => List::new(w, ty, 3)
            .dict(&m.details)?
            .string(&m.reason)
            .end(),
        Message::Error(m) => List::new(w, ty, 5 + parts(&m.payload))
            .uint(m.request_type.code())
            .id(m.request)
            .dict(&m.details)?
            .string(&m.error)
            .payload(&m.payload)
            .end(),
        Message::Publish(m) => List::new(w, ty, 4 + parts(&m.payload))
            .id(m.request)
            .dict(&m.options)?
            .string(&m.topic)
            .payload(&m.payload)
            .end(),
        Message::Published(m) => List::new(w, ty, 3).id(m.request).id(m.publication).end(),
        Message::Subscribe(m) => List::new(w, ty, 4)
            .id(m.request)
            .dict(&m.options)?
            .string(&m.topic)
            .end(),
        Message::Subscribed(m) => List::new(w, ty, 3).id(m.request).id(m.subscription).end(),
        Message::Unsubscribe(m) => List::new(w, ty, 3).id(m.request).id(m.subscription).end(),
        Message::Unsubscribed(m) => revocation(w, ty, m.request, m.details.as_ref())?,
        Message::Event(m) => List::new(w, ty, 4 + parts(&m.payload))
            .id(m.subscription)
            .id(m.publication)
            .dict(&m.details)?
            .payload(&m.payload)
            .end(),
        Message::Call(m) => List::new(w, ty, 4 + parts(&m.payload))
            .id(m.request)
            .dict(&m.options)?
            .string(&m.procedure)
            .payload(&m.payload)
            .end(),
        Message::Cancel(m) => List::new(w, ty, 3).id(m.request).dict(&m.options)?.end(),
        Message::Result(m) => List::new(w, ty, 3 + parts(&m.payload))
            .id(m.request)
            .dict(&m.details)?
            .payload(&m.payload)
            .end(),
        Message::Register(m) => List::new(w, ty, 4)
            .id(m.request)
            .dict(&m.options)?
            .string(&m.procedure)
            .end(),
        Message::Registered(m) => List::new(w, ty, 3).id(m.request).id(m.registration).end(),
        Message::Unregister(m) => List::new(w, ty, 3).id(m.request).id(m.registration).end(),
        Message::Unregistered(m) => revocation(w, ty, m.request, m.details.as_ref())?,
        Message::Invocation(m) => List::new(w, ty, 4 + parts(&m.payload))
            .id(m.request)
            .id(m.registration)
            .dict(&m.details)?
            .payload(&m.payload)
            .end(),
        Message::Interrupt(m) => List::new(w, ty, 3).id(m.request).dict(&m.options)?.end(),
        Message::Yield(m) => List::new(w, ty, 3 + parts(&m.payload))
            .id(m.request)
            .dict(&m.options)?
            .payload(&m.payload)
            .end(),
    }
    Ok(())
}

/// UNSUBSCRIBED / UNREGISTERED, whose request id is `0` in the router-initiated form.
fn revocation<W: Writer>(
    w: &mut W,
    ty: MessageType,
    request: Option<Id>,
    details: Option<&Dict>,
) -> Result<(), EncodeError> {
    let mut l = List::new(w, ty, 2 + usize::from(details.is_some()));
    l.uint(request.map_or(0, Id::get));
    if let Some(d) = details {
        l.dict(d)?;
    }
    l.end();
    Ok(())
}
