//! Real-socket tests of the WebSocket echo endpoint (`switchyard_io::echo`).
//!
//! The endpoint runs on its own thread (a monoio runtime) on an ephemeral port; the test
//! side is a blocking `std::net::TcpStream` driving the crate's own client handshake and a
//! client-role `Connection`, so both ends are this crate's code over a real socket. Read
//! timeouts only keep a broken server from hanging the test; nothing asserts on time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use switchyard_io::echo::{self, EchoConfig};
use switchyard_io::ws::conn::{Config, Connection, Event, Role};
use switchyard_io::ws::deflate::{DeflateConfig, PerMessageDeflate};
use switchyard_io::ws::handshake::ClientHandshake;

/// One echo endpoint for the whole test binary; it serves until the process exits.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || echo::run(listener, EchoConfig::default()));
        addr
    })
}

struct Client {
    stream: TcpStream,
    conn: Connection,
    /// Bytes read but not yet given to `conn` (only during the handshake).
    pending: Vec<u8>,
}

fn connect(deflate: bool) -> Client {
    let mut stream = TcpStream::connect(server()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let handshake = ClientHandshake::new([7; 16], Vec::new(), deflate);
    let mut request = Vec::new();
    handshake.write_request("localhost", "/any/path", &mut request);
    stream.write_all(&request).unwrap();
    let mut head = Vec::new();
    let accepted = loop {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during the handshake");
        head.extend_from_slice(&buf[..n]);
        if let Some(accepted) = handshake.parse_response(&head).unwrap() {
            break accepted;
        }
    };
    assert_eq!(accepted.deflate.is_some(), deflate);
    let pmd = accepted
        .deflate
        .as_ref()
        .map(|p| PerMessageDeflate::new_client(p, &DeflateConfig::default()).unwrap());
    let config = Config {
        max_frame_size: 32 << 20,
        max_message_size: 32 << 20,
        ..Config::default()
    };
    Client {
        stream,
        conn: Connection::new(Role::Client { mask_seed: 42 }, config, pmd),
        pending: head[accepted.consumed..].to_vec(),
    }
}

impl Client {
    fn send(&mut self, text: bool, data: &[u8]) {
        let mut out = Vec::new();
        self.conn.send_message(text, data, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads until the connection reports an event.
    fn next_event(&mut self) -> Event {
        let pending = std::mem::take(&mut self.pending);
        self.conn.handle_read(&pending);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(event) = self.conn.poll_event() {
                return event;
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "server closed the socket without an event");
            self.conn.handle_read(&buf[..n]);
            let mut out = Vec::new();
            if self.conn.poll_transmit(&mut out) {
                self.stream.write_all(&out).unwrap();
            }
        }
    }
}

#[test]
fn echoes_messages_with_and_without_deflate() {
    for deflate in [false, true] {
        let mut client = connect(deflate);
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let cases: [(bool, &[u8]); 4] = [
            (true, b"Hello, world!"),
            (true, "κόσμε".as_bytes()),
            (false, &big),
            (false, b""),
        ];
        for (text, data) in cases {
            client.send(text, data);
            match client.next_event() {
                Event::Message { text: t, data: d } => {
                    assert_eq!(t, text);
                    assert!(d == data, "echo differs ({} bytes)", d.len());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut out = Vec::new();
        client.conn.close(1000, "bye", &mut out);
        client.stream.write_all(&out).unwrap();
        match client.next_event() {
            Event::Closed { code, .. } => assert_eq!(code, Some(1000)),
            other => panic!("unexpected {other:?}"),
        }
        // The server closes the TCP connection after the handshake.
        let mut rest = Vec::new();
        client.stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

#[test]
fn protocol_error_gets_close_1002_and_the_socket_closed() {
    let mut client = connect(false);
    // A reserved opcode, masked as a client must.
    client.stream.write_all(&[0x83, 0x80, 1, 2, 3, 4]).unwrap();
    let mut rest = Vec::new();
    client.stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xea]);
}

#[test]
fn bad_handshake_gets_an_http_error() {
    let mut stream = TcpStream::connect(server()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
}
