//! The few operating-system calls the standard library and glommio do not offer: the
//! system-wide monotonic clock, bind-before-connect sockets with `IP_BIND_ADDRESS_NO_PORT`,
//! handing such a socket to glommio, and children that die with this process. Every `unsafe` block of the crate lives here.
//!
//! What it does not do: no socket options beyond those, no IPv6 source spreading.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Now on `CLOCK_MONOTONIC`, in nanoseconds. Unlike [`std::time::Instant`] the value means
/// the same in every process of the machine, so worker processes can stamp payloads and
/// agree on phase deadlines.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and CLOCK_MONOTONIC exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens a non-blocking TCP socket bound to `source` (port chosen at connect time thanks
/// to `IP_BIND_ADDRESS_NO_PORT`, so each source address offers the whole ephemeral range
/// per destination) and starts connecting it to `dest`. The connection completes in the
/// background; the first write waits for it.
pub fn connect_from(
    source: Option<std::net::Ipv4Addr>,
    dest: SocketAddrV4,
) -> io::Result<glommio::net::TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    if let Some(src) = source {
        bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    }
    match socket.connect(&SocketAddr::V4(dest).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is an open TCP socket that
    // nothing else owns; the glommio stream takes over closing it.
    Ok(unsafe { glommio::net::TcpStream::from_raw_fd(fd) })
}

/// Makes the process `cmd` starts receive `signal` when the thread that spawns it ends
/// (`PR_SET_PDEATHSIG`; spawn from the main thread, which lives as long as the process), so
/// that a load generator killed by a time limit leaves no router or worker behind. The
/// setting survives `exec`.
pub fn die_with_parent(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the fd is open for the duration of the call, and `one` is a live c_int whose
    // size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The i-th of `count` source addresses spread over 127.0.0.0/8 (never `.0` or
/// `.255.255.255`): 127.0.0.1, 127.0.0.2, … so that each carries at most
/// `ceil(n / count)` connections to one router address.
pub fn source_address(i: u64, count: u64) -> std::net::Ipv4Addr {
    let k = (i % count.max(1)) as u32 + 1;
    std::net::Ipv4Addr::from(0x7f00_0000 | (k & 0x00ff_ffff))
}

/// How many source addresses `connections` to one destination need, given the ephemeral
/// port range `ports`, keeping a quarter of each address's ports free (TIME-WAIT leftovers
/// of earlier runs).
pub fn source_count(connections: u64, ports: u64) -> u64 {
    let usable = (ports * 3 / 4).max(1);
    connections.div_ceil(usable).clamp(1, 0x00ff_fffe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_agrees_with_instant() {
        // The safe reference: std's Instant is CLOCK_MONOTONIC on Linux too, so the
        // interval each measures between the same two points must bracket the other's.
        let a = now_ns();
        let i = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let e = i.elapsed().as_nanos() as u64;
        let b = now_ns();
        assert!(b - a >= e, "{} < {}", b - a, e);
    }

    #[test]
    fn sources() {
        assert_eq!(
            source_address(0, 3),
            "127.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(
            source_address(4, 3),
            "127.0.0.2".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(
            source_address(300, 1000),
            "127.0.1.45".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(source_count(1, 28_232), 1);
        assert_eq!(source_count(180_000, 28_232), 9);
        assert_eq!(source_count(0, 0), 1);
    }

    #[test]
    fn children_learn_of_our_death() {
        // A child spawned by a thread that ends at once: with the setting the kernel
        // kills it then; without it, sleep would exit normally after 30 s.
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd, libc::SIGKILL);
            let child = cmd.spawn().unwrap();
            tx.send(child).unwrap();
        });
        t.join().unwrap();
        let mut child = rx.recv().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn bind_no_port_sets_the_option() {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bind_address_no_port(&s).unwrap();
        s.bind(&SocketAddr::V4("127.0.0.9:0".parse().unwrap()).into())
            .unwrap();
        // With the option set, bind() leaves the port unassigned until connect().
        let local = s.local_addr().unwrap().as_socket_ipv4().unwrap();
        assert_eq!(local.port(), 0);
    }
}
