//! The control channel between the controller and one worker process: a Unix
//! `SOCK_SEQPACKET` socket pair whose worker end is the worker's standard input.
//!
//! Every message is one packet of [`PACKET`] bytes (kind, then two u16 fields). The
//! controller sends `Link` (kind 1: "your shard `local` reaches shard `remote` over the
//! attached socket", with exactly one descriptor passed by `SCM_RIGHTS`), `Listener`
//! (kind 3: "the listening Unix socket of transport number `local` is the attached
//! descriptor": the controller binds each Unix-socket endpoint once and every worker
//! accepts on it) and `Ready` (kind 2: "every link and listener you start with has been
//! sent"). Links to a restarted worker arrive later as more `Link` messages. End of
//! stream means the controller is gone, and the worker shuts down.
//!
//! A worker reports to the controller on the same socket: `Stalled` (kind 4: "my shard
//! `local` broke its link to shard `remote` at its queue limit": that shard stopped
//! reading) and `Silent` (kind 5: "my rejoining shard `local` heard nothing from shard
//! `remote` within the rejoin timeout"). The controller restarts the worker of the named
//! shard (see [`crate::controller`]).
//!
//! It does not carry router traffic (that goes over the links themselves) nor signals
//! (the controller forwards SIGTERM with `kill`).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};

/// The size of every control packet.
pub(crate) const PACKET: usize = 8;
const KIND_LINK: u8 = 1;
const KIND_READY: u8 = 2;
const KIND_LISTENER: u8 = 3;
const KIND_STALLED: u8 = 4;
const KIND_SILENT: u8 = 5;

/// One control message, as the worker receives it.
#[derive(Debug)]
pub(crate) enum ControlMsg {
    /// The worker's shard `local` reaches shard `remote` (of another worker) over `fd`.
    Link {
        /// A shard of this worker (global index).
        local: u16,
        /// A shard of another worker (global index).
        remote: u16,
        /// This end of the link's stream socket.
        fd: OwnedFd,
    },
    /// Every initial link has been sent: the worker may start serving.
    Ready,
    /// The listening socket of a Unix-socket transport, bound by the controller.
    Listener {
        /// The transport's position in the configuration's `transports`.
        transport: u16,
        /// The listening socket.
        fd: OwnedFd,
    },
    /// (Worker to controller.) The link from shard `reporter` to shard `shard` broke at
    /// its queue limit: `shard` stopped reading.
    Stalled {
        /// The reporting worker's shard.
        reporter: u16,
        /// The shard that stopped reading.
        shard: u16,
    },
    /// (Worker to controller.) The rejoining shard `reporter` is still waiting for shard
    /// `shard` after the rejoin timeout.
    Silent {
        /// The reporting worker's rejoining shard.
        reporter: u16,
        /// The shard it waits for.
        shard: u16,
    },
}

/// Why a control packet was refused.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum ControlError {
    /// The socket failed.
    Io(io::Error),
    /// A packet of the wrong size.
    Size(usize),
    /// A packet of an unknown kind.
    UnknownKind(u8),
    /// A `Link` or `Listener` packet without its descriptor.
    MissingFd,
    /// A packet or its descriptors were cut short by the kernel.
    Truncated,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "control socket: {e}"),
            Self::Size(n) => write!(f, "control packet of {n} bytes (expected {PACKET})"),
            Self::UnknownKind(k) => write!(f, "control packet of unknown kind {k}"),
            Self::MissingFd => write!(f, "link or listener packet without a socket"),
            Self::Truncated => write!(f, "control packet truncated"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A new control socket pair (close-on-exec: the worker's end becomes its standard input
/// through `Stdio`, which duplicates it without the flag).
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A pair of stream sockets for one link between two shards.
pub(crate) fn link_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

fn packet(kind: u8, local: u16, remote: u16) -> [u8; PACKET] {
    let [l0, l1] = local.to_le_bytes();
    let [r0, r1] = remote.to_le_bytes();
    [kind, 0, l0, l1, r0, r1, 0, 0]
}

/// Sends a `Link` message with `fd` attached.
pub(crate) fn send_link(
    socket: BorrowedFd<'_>,
    local: u16,
    remote: u16,
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    send_fd(socket, packet(KIND_LINK, local, remote), fd)
}

/// Sends a `Listener` message with the listening socket `fd` attached.
pub(crate) fn send_listener(
    socket: BorrowedFd<'_>,
    transport: u16,
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    send_fd(socket, packet(KIND_LISTENER, transport, 0), fd)
}

/// Sends a worker's `Stalled` report (without blocking: a controller that does not read
/// its reports must not stall the core that reports).
pub(crate) fn send_stalled(socket: BorrowedFd<'_>, reporter: u16, shard: u16) -> io::Result<()> {
    send_report(socket, packet(KIND_STALLED, reporter, shard))
}

/// Sends a worker's `Silent` report (without blocking).
pub(crate) fn send_silent(socket: BorrowedFd<'_>, reporter: u16, shard: u16) -> io::Result<()> {
    send_report(socket, packet(KIND_SILENT, reporter, shard))
}

fn send_report(socket: BorrowedFd<'_>, bytes: [u8; PACKET]) -> io::Result<()> {
    loop {
        match sendmsg(
            socket,
            &[IoSlice::new(&bytes)],
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => return Err(io::Error::other(format!("short control send ({n} bytes)"))),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn send_fd(socket: BorrowedFd<'_>, bytes: [u8; PACKET], fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the descriptor"));
    }
    send(socket, &bytes, &mut control)
}

/// Sends a `Ready` message.
pub(crate) fn send_ready(socket: BorrowedFd<'_>) -> io::Result<()> {
    send(
        socket,
        &packet(KIND_READY, 0, 0),
        &mut SendAncillaryBuffer::default(),
    )
}

fn send(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    control: &mut SendAncillaryBuffer<'_, '_, '_>,
) -> io::Result<()> {
    loop {
        match sendmsg(socket, &[IoSlice::new(bytes)], control, SendFlags::NOSIGNAL) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => return Err(io::Error::other(format!("short control send ({n} bytes)"))),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one control message; `Ok(None)` at end of stream (the controller is gone).
pub(crate) fn recv(socket: impl AsFd) -> Result<Option<ControlMsg>, ControlError> {
    let mut bytes = [0u8; PACKET + 1];
    // Room for a few descriptors: any beyond the one expected are closed when dropped.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match recvmsg(
            socket.as_fd(),
            &mut [IoSliceMut::new(&mut bytes)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => break got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ControlError::Io(e.into())),
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) || got.flags.contains(ReturnFlags::TRUNC) {
        return Err(ControlError::Truncated);
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    decode(&bytes[..got.bytes], fds).map(Some)
}

/// A packet and the descriptors that came with it, as a message.
fn decode(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<ControlMsg, ControlError> {
    let Ok(bytes) = <[u8; PACKET]>::try_from(bytes) else {
        return Err(ControlError::Size(bytes.len()));
    };
    match bytes[0] {
        KIND_LINK => {
            let fd = fds.into_iter().next().ok_or(ControlError::MissingFd)?;
            Ok(ControlMsg::Link {
                local: u16::from_le_bytes([bytes[2], bytes[3]]),
                remote: u16::from_le_bytes([bytes[4], bytes[5]]),
                fd,
            })
        }
        KIND_READY => Ok(ControlMsg::Ready),
        KIND_LISTENER => {
            let fd = fds.into_iter().next().ok_or(ControlError::MissingFd)?;
            Ok(ControlMsg::Listener {
                transport: u16::from_le_bytes([bytes[2], bytes[3]]),
                fd,
            })
        }
        KIND_STALLED => Ok(ControlMsg::Stalled {
            reporter: u16::from_le_bytes([bytes[2], bytes[3]]),
            shard: u16::from_le_bytes([bytes[4], bytes[5]]),
        }),
        KIND_SILENT => Ok(ControlMsg::Silent {
            reporter: u16::from_le_bytes([bytes[2], bytes[3]]),
            shard: u16::from_le_bytes([bytes[4], bytes[5]]),
        }),
        other => Err(ControlError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A link and a ready message cross a real socket pair; the passed descriptor is a
    /// working socket.
    #[test]
    fn link_and_ready_cross_the_control_socket() {
        let (controller, worker) = pair().expect("control pair");
        let (a, b) = link_pair().expect("link pair");
        send_link(controller.as_fd(), 3, 7, a.as_fd()).expect("send link");
        drop(a);
        send_ready(controller.as_fd()).expect("send ready");
        let Ok(Some(ControlMsg::Link { local, remote, fd })) = recv(&worker) else {
            panic!("no link message");
        };
        assert_eq!((local, remote), (3, 7));
        let mut passed = UnixStream::from(fd);
        let mut other = UnixStream::from(b);
        passed.write_all(b"ping").expect("write");
        let mut got = [0; 4];
        other.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"ping");
        assert!(matches!(recv(&worker), Ok(Some(ControlMsg::Ready))));
        // Reports travel the other way on the same socket.
        send_stalled(worker.as_fd(), 1, 6).expect("send stalled");
        send_silent(worker.as_fd(), 2, 5).expect("send silent");
        let got = [recv(&controller), recv(&controller)].map(|m| format!("{m:?}"));
        assert_eq!(
            got,
            [
                "Ok(Some(Stalled { reporter: 1, shard: 6 }))",
                "Ok(Some(Silent { reporter: 2, shard: 5 }))"
            ]
        );
        drop(controller);
        assert!(matches!(recv(&worker), Ok(None)));
    }

    #[test]
    fn bad_packets_are_typed_errors() {
        let check = |bytes: &[u8], expect: &str| {
            let got = decode(bytes, Vec::new()).map(|m| format!("{m:?}"));
            assert_eq!(
                got.map_err(|e| e.to_string()),
                Err(expect.to_owned()),
                "{bytes:?}"
            );
        };
        check(&[1, 0, 0], "control packet of 3 bytes (expected 8)");
        check(
            &[9, 0, 0, 0, 0, 0, 0, 0],
            "control packet of unknown kind 9",
        );
        check(
            &[1, 0, 0, 0, 0, 0, 0, 0],
            "link or listener packet without a socket",
        );
        check(
            &[3, 0, 1, 0, 0, 0, 0, 0],
            "link or listener packet without a socket",
        );
    }
}
