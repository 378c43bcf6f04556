//! Vectored writes of a list of `Bytes`: monoio's `writev` takes an `IoVecBuf`, and monoio
//! has none for `Vec<Bytes>`, so [`IoVecs`] holds the buffers and their `iovec`s and
//! advances over partial writes. A fan-out frame shared by many connections is written
//! from the one allocation they all hold, never copied per connection.
//!
//! A batch is first offered to the socket with a synchronous non-blocking `sendmsg`: the
//! common case (the batch fits the socket's send buffer) then costs one system call and no
//! trip through the ring, whose completion would otherwise take another turn of the
//! core's loop before the connection can wait for input again. Only what the socket did
//! not take goes through the runtime's `writev`, which waits for room.
//!
//! What it does not do: it does not coalesce small buffers (the caller batches the
//! transport's own small frames into one buffer) and it writes at most [`IOV_MAX`] buffers
//! per system call.

use std::io;
use std::os::fd::RawFd;

use bytes::{Buf, Bytes};
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;

/// The most `iovec`s one `writev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Buffers to write in order, with the `iovec`s of the first [`IOV_MAX`] of them.
pub(super) struct IoVecs {
    bufs: Vec<Bytes>,
    /// The first buffer not yet fully written.
    first: usize,
    iovecs: Vec<libc::iovec>,
}

impl IoVecs {
    pub(super) fn new(bufs: Vec<Bytes>) -> Self {
        let mut v = Self {
            bufs,
            first: 0,
            iovecs: Vec::new(),
        };
        v.rebuild();
        v
    }

    /// Whether everything was written.
    pub(super) fn is_empty(&self) -> bool {
        self.first == self.bufs.len()
    }

    /// Marks `n` more bytes as written.
    pub(super) fn advance(&mut self, mut n: usize) {
        while n > 0 && self.first < self.bufs.len() {
            let buf = &mut self.bufs[self.first];
            if n >= buf.len() {
                n -= buf.len();
                self.first += 1;
            } else {
                buf.advance(n);
                n = 0;
            }
        }
        // Empty buffers ahead would otherwise stay "unwritten" forever.
        while self.bufs.get(self.first).is_some_and(Bytes::is_empty) {
            self.first += 1;
        }
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.iovecs.clear();
        for buf in self.bufs[self.first..].iter().take(IOV_MAX) {
            self.iovecs.push(libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            });
        }
    }
}

// SAFETY: the `iovec`s point into `Bytes` owned by `self.bufs`, whose heap (or static)
// storage does not move when `IoVecs` moves; `iovecs` is only rebuilt through `&mut self`
// (in `advance`), which the runtime cannot call while it owns the value, so the pointer and
// length it reads stay valid and describe exactly `iovecs.len()` initialised entries.
unsafe impl IoVecBuf for IoVecs {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// Sends as much of `v` as the socket `fd` takes now, without waiting. Returns when
/// everything was sent or the socket's buffer is full.
fn send_now(fd: RawFd, v: &mut IoVecs) -> io::Result<()> {
    while !v.is_empty() {
        // SAFETY: `msghdr` is plain data for which all-zero bytes are a valid value (null
        // pointers, zero lengths); only the iovec fields are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = v.iovecs.as_ptr().cast_mut();
        msg.msg_iovlen = v.iovecs.len();
        // SAFETY: `msg` points at `v.iovecs`, which describe initialised bytes of the
        // `Bytes` that `v` owns (see `IoVecs`) and outlive the call; the kernel only reads
        // them. A bad descriptor fails with EBADF without touching memory.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        match usize::try_from(n) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => v.advance(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return Ok(()),
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Writes every buffer, in order, to `stream` (whose descriptor is `fd`): at once as far
/// as the socket takes it, the rest with as few `writev` calls as the socket allows.
pub(super) async fn write_all<W: AsyncWriteRent>(
    stream: &mut W,
    fd: RawFd,
    bufs: Vec<Bytes>,
) -> io::Result<()> {
    let mut v = IoVecs::new(bufs);
    v.advance(0);
    send_now(fd, &mut v)?;
    while !v.is_empty() {
        let (result, back) = stream.writev(v).await;
        v = back;
        match result? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => v.advance(n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the iovecs describe, read through their raw pointers as `writev` would.
    fn described(v: &IoVecs) -> Vec<u8> {
        let mut out = Vec::new();
        for iov in &v.iovecs {
            // SAFETY: each iovec points at `iov_len` initialised bytes of a live `Bytes`.
            let s = unsafe { std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len) };
            out.extend_from_slice(s);
        }
        out
    }

    /// Advancing by any sequence of partial writes leaves exactly the unwritten suffix of
    /// the concatenation (checked against a plain `Vec<u8>` reference), and the iovecs
    /// describe a non-empty prefix of it until everything is written.
    fn check(parts: &[&[u8]], writes: &[usize]) {
        let all: Vec<u8> = parts.concat();
        let mut v = IoVecs::new(parts.iter().map(|p| Bytes::copy_from_slice(p)).collect());
        v.advance(0);
        let mut done = 0;
        for &w in writes.iter().chain([&0]) {
            let w = w.min(all.len() - done);
            v.advance(w);
            done += w;
            let rest: Vec<u8> = v.bufs[v.first..].concat();
            assert_eq!(rest, &all[done..], "after {done} bytes");
            let seen = described(&v);
            assert!(rest.starts_with(&seen) && (seen.is_empty() == rest.is_empty()));
            assert_eq!(v.is_empty(), done == all.len());
        }
    }

    #[test]
    fn partial_writes_leave_the_unwritten_suffix() {
        check(&[b"abc", b"", b"defgh", b"i"], &[1, 2, 0, 4, 1, 1]);
        check(&[b"abc", b"defgh"], &[3, 5]);
        check(&[b"", b""], &[]);
        check(&[b"0123456789"], &[9, 1]);
    }

    #[test]
    fn more_buffers_than_iov_max_are_written_in_rounds() {
        let parts: Vec<Vec<u8>> = (0..2500u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let v = IoVecs::new(refs.iter().map(|p| Bytes::copy_from_slice(p)).collect());
        assert_eq!(v.iovecs.len(), IOV_MAX);
        check(&refs, &[4 * 1000, 4 * 1000 + 3, 1, 4 * 500]);
    }

    #[test]
    fn writes_everything_through_a_socket() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut got = Vec::new();
                io::Read::read_to_end(&mut s, &mut got).unwrap();
                got
            });
            let mut stream = monoio::net::TcpStream::connect(addr).await.unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
            // Small enough to go at once, then far more than the socket buffers: the rest
            // waits for room in the runtime's writev.
            write_all(&mut stream, fd, vec![Bytes::from_static(b"first ")])
                .await
                .unwrap();
            let shared = Bytes::from(vec![7u8; 3_000_000]);
            let bufs = vec![
                Bytes::from_static(b"head"),
                shared.clone(),
                Bytes::new(),
                shared.clone(),
                Bytes::from_static(b"tail"),
            ];
            write_all(&mut stream, fd, bufs).await.unwrap();
            drop(stream);
            let got = reader.join().unwrap();
            let mut expect = b"first head".to_vec();
            expect.extend_from_slice(&shared);
            expect.extend_from_slice(&shared);
            expect.extend_from_slice(b"tail");
            assert_eq!(got, expect);
        });
    }
}
