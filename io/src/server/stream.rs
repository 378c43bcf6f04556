//! The byte pipe under a connection: a TCP or Unix stream, optionally with TLS (rustls,
//! driven sans-IO), behind one small interface the connection driver uses — wait for
//! readability, read once into a per-core pooled buffer, write a batch, close.
//!
//! The read is a synchronous non-blocking `recv` made once the socket is readable, not a
//! runtime read operation: under io_uring a read operation owns its buffer until its
//! completion is reaped, so every connection woken in the same tick (thousands of sessions
//! leaving at once) held a 64 KiB buffer of its own, and the router's RSS climbed to ~3.5
//! times its idle figure (`BENCHMARKS.md`, capacity section). Synchronous, the reads of a
//! core share one buffer.
//!
//! With TLS, the ciphertext read into the pooled buffer is handed to rustls, which decrypts
//! it; the plaintext is handed on by reference (rustls's `BufRead`), never copied into a
//! buffer of ours. Outgoing plaintext is encrypted into one temporary buffer per batch and
//! written at once. After each read every decrypted byte has been handed on, so waiting for
//! the socket's readability is always the right wait.
//!
//! What it does not do: decide anything about WebSocket, RawSocket or WAMP; hold a buffer
//! of its own between reads (rustls keeps its incoming-record buffer: see `tls.rs`).

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use bytes::Bytes;
use monoio::io::AsyncWriteRent;
use monoio::net::{TcpStream, UnixStream};
use rustls::{ServerConfig, ServerConnection};

use super::writev;

/// Size of each pooled read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Buffers kept in the per-core pool: reads are synchronous, so one is in use at a time.
const POOL_LIMIT: usize = 4;

thread_local! {
    /// The per-core pool of read buffers: a connection holds one only during a read.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An accepted socket.
pub(super) enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-socket connection.
    Unix(UnixStream),
}

impl Stream {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.readable(false).await,
            Self::Unix(s) => s.readable(false).await,
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        }
    }

    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        self.writev_all(vec![buf]).await
    }

    async fn writev_all(&mut self, bufs: Vec<Bytes>) -> io::Result<()> {
        let fd = self.raw_fd();
        match self {
            Self::Tcp(s) => writev::write_all(s, fd, bufs).await,
            Self::Unix(s) => writev::write_all(s, fd, bufs).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown().await,
            Self::Unix(s) => s.shutdown().await,
        }
    }
}

/// A connection's socket and, on TLS endpoints, its TLS state.
pub(super) struct Link {
    stream: Stream,
    tls: Option<Box<ServerConnection>>,
}

impl Link {
    /// A plain link.
    pub(super) fn plain(stream: Stream) -> Self {
        Self { stream, tls: None }
    }

    /// A TLS link; [`Link::handshake`] must complete before anything else.
    pub(super) fn tls(stream: Stream, config: &Arc<ServerConfig>) -> io::Result<Self> {
        let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        // The connection's outbound queue is bounded by the core (slow-consumer policy), and
        // every batch is encrypted and written out at once, so rustls's own limit would only
        // split writes.
        conn.set_buffer_limit(None);
        Ok(Self {
            stream,
            tls: Some(Box::new(conn)),
        })
    }

    /// Completes the TLS handshake (nothing to do on a plain link). The caller bounds it
    /// by the opening timeout. Returns the plaintext that arrived with the handshake's last
    /// flight, which belongs to the opening handshake of WebSocket or RawSocket.
    pub(super) async fn handshake(&mut self) -> io::Result<Vec<u8>> {
        let mut early = Vec::new();
        loop {
            self.flush_tls().await?;
            match &self.tls {
                Some(tls) if tls.is_handshaking() => {}
                _ => return Ok(early),
            }
            self.readable().await?;
            if self.read(|bytes| early.extend_from_slice(bytes)).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The subject common name of the client certificate TLS verified, if any.
    pub(super) fn client_cert_cn(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let cert = tls.peer_certificates()?.first()?;
        super::tls::subject_common_name(cert.as_ref())
    }

    /// The SHA-1 fingerprint of the client certificate TLS verified, if any (the `tls`
    /// authentication method matches it).
    pub(super) fn client_cert_sha1(&self) -> Option<[u8; 20]> {
        use sha1::Digest;
        let tls = self.tls.as_ref()?;
        let cert = tls.peer_certificates()?.first()?;
        Some(sha1::Sha1::digest(cert.as_ref()).into())
    }

    /// Whether the link is TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Waits until the socket has bytes (or an end) to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Reads once into a pooled buffer (call after `readable`) and hands the bytes (the
    /// plaintext, on TLS) to `f`, possibly in several pieces. Returns `true` at the end of
    /// the stream (or TLS close_notify).
    pub(super) async fn read(&mut self, f: impl FnMut(&[u8])) -> io::Result<bool> {
        let outcome = self.read_now(f);
        // rustls may have something to say after reading: handshake flights, alerts (also
        // the one explaining a failure), key updates.
        let flushed = self.flush_tls().await;
        let eof = outcome?;
        flushed?;
        Ok(eof)
    }

    /// [`Link::read`] without the flush of rustls's answer: the caller flushes it when
    /// [`Link::wants_flush`] says so (then also after an error), so that a plain link's
    /// read needs no future at all.
    pub(super) fn read_now(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<bool> {
        let mut buf = POOL
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| vec![0; READ_BUFFER]);
        let outcome = match recv(self.stream.raw_fd(), &mut buf) {
            Ok(Some(0)) => Ok(true),
            Ok(Some(n)) => match &mut self.tls {
                None => {
                    f(&buf[..n]);
                    Ok(false)
                }
                Some(tls) => decrypt(tls, &buf[..n], &mut f),
            },
            // Readiness was stale: nothing to read yet.
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_LIMIT {
                pool.push(buf);
            }
        });
        outcome
    }

    /// Whether rustls has bytes to send ([`Link::flush_tls`]); never on a plain link.
    pub(super) fn wants_flush(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Writes one buffer.
    pub(super) async fn write(&mut self, buf: Bytes) -> io::Result<()> {
        self.write_batch(vec![buf]).await
    }

    /// Writes a batch of buffers in order: one vectored write on a plain link, one
    /// encrypted buffer on TLS.
    pub(super) async fn write_batch(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        match &mut self.tls {
            None if batch.is_empty() => Ok(()),
            None => self.stream.writev_all(batch).await,
            Some(tls) => {
                for buf in &batch {
                    // Without a buffer limit rustls takes everything.
                    tls.writer().write_all(buf)?;
                }
                self.flush_tls().await
            }
        }
    }

    /// Writes whatever rustls has to send.
    pub(super) async fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        if !tls.wants_write() {
            return Ok(());
        }
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)?;
        }
        self.stream.write_all(Bytes::from(out)).await
    }

    /// Ends the sending side: TLS close_notify, then the socket's half-close.
    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            if !tls.is_handshaking() {
                tls.send_close_notify();
                self.flush_tls().await?;
            }
        }
        self.stream.shutdown().await
    }
}

/// One non-blocking `recv` into `buf`: `Some(n)` bytes read (`Some(0)` at end of stream),
/// `None` when nothing is waiting.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is an initialised slice borrowed exclusively for the call, so the
        // kernel may write up to `buf.len()` bytes at its start and nothing else reads or
        // writes it meanwhile; `recv` on a bad descriptor fails with EBADF, it does not
        // touch memory.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(Some(n));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Feeds ciphertext to rustls and hands every decrypted byte to `f`. Returns `true` when
/// the peer closed TLS (close_notify).
fn decrypt(
    tls: &mut ServerConnection,
    mut data: &[u8],
    f: &mut impl FnMut(&[u8]),
) -> io::Result<bool> {
    let mut closed = false;
    while !data.is_empty() {
        // rustls takes at most one record's worth per call; the slice advances.
        tls.read_tls(&mut data)?;
        let state = tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut reader = tls.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => {
                    closed = true;
                    break;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    f(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        closed |= state.peer_has_closed();
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// `recv` returns what std's safe `Read::read` returns for the same bytes, `None` when
    /// nothing is waiting, and `Some(0)` once the peer has shut down its side.
    #[test]
    fn recv_matches_std_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut ours, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64];
        assert_eq!(recv(ours.as_raw_fd(), &mut buf).unwrap(), None);
        for message in [&b"hello"[..], &[0u8, 255, 7][..]] {
            peer.write_all(message).unwrap();
            // `peek` blocks until the bytes arrived, so the non-blocking recv finds them.
            ours.peek(&mut [0u8; 1]).unwrap();
            let n = recv(ours.as_raw_fd(), &mut buf).unwrap().unwrap();
            let mine = buf[..n].to_vec();
            peer.write_all(message).unwrap();
            let mut reference = vec![0u8; 64];
            let m = ours.read(&mut reference).unwrap();
            assert_eq!(mine, &reference[..m]);
            assert_eq!(mine, message);
        }
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        ours.peek(&mut [0u8; 1]).unwrap();
        assert_eq!(recv(ours.as_raw_fd(), &mut buf).unwrap(), Some(0));
        assert!(recv(-1, &mut buf).is_err());
    }

    /// Through the runtime (io_uring where available, else epoll, as the server runs):
    /// after `readable`, `read` hands over exactly the bytes sent, then reports the end of
    /// the stream, and the core's reads share one pooled buffer.
    #[test]
    fn reads_deliver_the_bytes_then_the_end() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                for i in 0..50u8 {
                    s.write_all(&[i; 1000]).unwrap();
                }
            });
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut link = Link::plain(Stream::Tcp(stream));
            let mut got = Vec::new();
            loop {
                link.readable().await.unwrap();
                if link.read(|b| got.extend_from_slice(b)).await.unwrap() {
                    break;
                }
            }
            writer.join().unwrap();
            let expect: Vec<u8> = (0..50u8).flat_map(|i| [i; 1000]).collect();
            assert_eq!(got, expect);
            assert_eq!(POOL.with_borrow(Vec::len), 1);
        });
    }
}
