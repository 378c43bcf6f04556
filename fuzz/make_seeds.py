#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/.

Each seed starts with the selector byte its target documents (see fuzz/src/*.rs), except
wamp_json and wamp_msgpack, whose input is one frame. The WAMP frames come from the
wamp-proto test vectors committed in core/tests/vectors. Run from the repository root:
`python3 fuzz/make_seeds.py`. It only adds or overwrites seed files, it never deletes.
"""

import base64
import hashlib
import json
import os
import random
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# ---- WebSocket ----

def header(opcode, length, fin=True, rsv1=False, mask=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    m = 0x80 if mask is not None else 0
    if length < 126:
        out = bytes([b0, m | length])
    elif length <= 0xFFFF:
        out = bytes([b0, m | 126]) + struct.pack(">H", length)
    else:
        out = bytes([b0, m | 127]) + struct.pack(">Q", length)
    return out + (bytes(mask) if mask is not None else b"")


def frame(opcode, payload, fin=True, rsv1=False, mask=(0x37, 0xFA, 0x21, 0x3D)):
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header(opcode, len(payload), fin, rsv1, mask) + masked


def deflate(data, wbits=15):
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


MASK = (0x37, 0xFA, 0x21, 0x3D)
# ws_frame_header selector: bit 0 RSV1 allowed, bit 1 server side, bits 2.. limit index
# (0, 125, 126, 0xffff, 0x10000, 1 << 24).
BIG = 5 << 2
put("ws_frame_header", "text_masked", [0x02 | BIG] + list(header(1, 5, mask=MASK)))
put("ws_frame_header", "binary_len16", [0x02 | BIG] + list(header(2, 300, mask=MASK)))
put("ws_frame_header", "binary_len64", [0x02 | BIG] + list(header(2, 70000, mask=MASK)))
put("ws_frame_header", "client_side_unmasked", [BIG] + list(header(1, 5)))
put("ws_frame_header", "rsv1_text", [0x03 | BIG] + list(header(1, 5, rsv1=True, mask=MASK)))
put("ws_frame_header", "ping", [0x02 | BIG] + list(header(9, 0, mask=MASK)))
put("ws_frame_header", "close", [0x02 | BIG] + list(header(8, 2, mask=MASK)))
put("ws_frame_header", "continuation", [0x02 | BIG] + list(header(0, 9, fin=False, mask=MASK)))
put("ws_frame_header", "reserved_opcode", [0x02 | BIG, 0x83, 0x80] + list(MASK))
put("ws_frame_header", "fragmented_ping", [0x02 | BIG, 0x09, 0x80] + list(MASK))
put("ws_frame_header", "non_minimal_16", [0x02 | BIG, 0x82, 0xFE, 0x00, 0x10] + list(MASK))
put("ws_frame_header", "top_bit_64", [0x02 | BIG, 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1] + list(MASK))
put("ws_frame_header", "over_limit", [0x02 | (1 << 2)] + list(header(2, 126, mask=MASK)))

# ws_message selector: bit 0 deflate, bit 1 client no context takeover, bits 2-3 limits
# ((125,256), (1024,1024), (256,4096), (16M,16M)), bits 4-5 read pattern.
LARGE = 3 << 2
euro = "€ and 😀".encode()
put("ws_message", "text_hello", [LARGE] + list(frame(1, b"hello")))
put("ws_message", "fragmented_utf8_ping_close",
    [LARGE | 0x10]
    + list(frame(1, euro[:2], fin=False))
    + list(frame(9, b"ping"))
    + list(frame(0, euro[2:7], fin=False))
    + list(frame(0, euro[7:]))
    + list(frame(8, struct.pack(">H", 1000) + b"bye")))
put("ws_message", "invalid_utf8", [LARGE] + list(frame(1, b"ok \xff\xfe")))
put("ws_message", "binary_and_pong", [LARGE | 0x20] + list(frame(2, bytes(range(40)))) + list(frame(10, b"")))
put("ws_message", "close_bad_code", [LARGE] + list(frame(8, struct.pack(">H", 1005))))
put("ws_message", "too_large", [0x04 | 0x30] + list(frame(2, b"x" * 2000)))
wamp = b'[16,1,{},"com.example.topic",["a",1,2.5],{"k":true}]'
put("ws_message", "deflate_text", [LARGE | 0x01] + list(frame(1, deflate(wamp), rsv1=True)) + list(frame(1, deflate(wamp), rsv1=True)))
comp = deflate(wamp * 3)
put("ws_message", "deflate_fragmented",
    [LARGE | 0x03 | 0x10]
    + list(frame(1, comp[:7], fin=False, rsv1=True))
    + list(frame(0, comp[7:])))
put("ws_message", "deflate_bomb", [0x04 | 0x01] + list(frame(2, deflate(b"\0" * 100000), rsv1=True)))

# ws_deflate selector: bit 0 round trip, bit 1 no context takeover, bits 2-3 window
# (9 + n % 7), bits 4-6 output limit (0, 1, 2, 100, 1024, 4096, 16K, 1M).
def fragments(data, size):
    out = []
    for i in range(0, len(data), size):
        part = data[i:i + size]
        fin = i + size >= len(data)
        out += [(0x80 if fin else 0) | len(part)] + list(part)
    return out


put("ws_deflate", "inflate_two_messages", [0x50 | 0x18] + fragments(deflate(wamp), 20) + fragments(deflate(wamp * 2), 63))
put("ws_deflate", "inflate_bomb", [0x40 | 0x18] + fragments(deflate(b"\0" * 200000), 63))
put("ws_deflate", "inflate_small_window", [0x50] + fragments(deflate(wamp * 4, 9), 30))
put("ws_deflate", "inflate_garbage", [0x70] + fragments(bytes(random.Random(1).randrange(256) for _ in range(200)), 50))
put("ws_deflate", "round_trip", [0x01 | 0x18] + [len(wamp)] + list(wamp) + [5] + list(b"hello") + [0] + [200] + list(b"z" * 200))
put("ws_deflate", "round_trip_no_takeover", [0x03] + [len(wamp)] + list(wamp) + [len(wamp)] + list(wamp))

# http_upgrade selector: bit 0 deflate offered, bit 1 subprotocol required, bits 2-3 head
# limit (0, 64, 512, 8192), bit 4 client side.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
req = (
    "GET /ws?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wamp.2.msgpack, wamp.2.json\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate\r\n"
    "Origin: http://example.com\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"
).encode()
put("http_upgrade", "full_request", [0x0F] + list(req) + list(frame(1, b"hi")))
put("http_upgrade", "minimal_request", [0x0C] + list(
    ("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: " + KEY + "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()))
put("http_upgrade", "post", [0x0C] + list(req.replace(b"GET", b"POST", 1)))
put("http_upgrade", "http10", [0x0C] + list(req.replace(b"HTTP/1.1", b"HTTP/1.0", 1)))
put("http_upgrade", "version8", [0x0E] + list(req.replace(b"Version: 13", b"Version: 8")))
put("http_upgrade", "bad_key", [0x0E] + list(req.replace(KEY.encode(), b"short")))
put("http_upgrade", "bad_extension", [0x0F] + list(req.replace(b"client_max_window_bits,", b"server_max_window_bits=7,")))
put("http_upgrade", "too_large", [0x04] + list(req))
put("http_upgrade", "partial", [0x0C] + list(req[:40]))
client_key = base64.b64encode(bytes([0x11] * 16))
accept = base64.b64encode(hashlib.sha1(client_key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
put("http_upgrade", "client_response", [0x11] + list(
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: wamp.2.json\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"))

# ---- RawSocket ----
# selector: bit 0 client side, bits 1-2 receive limit (0, 4096, 100000, 16M), bit 3 peer
# must receive 64 KiB, bits 4-5 read pattern.

def rs_frame(kind, payload):
    return list(struct.pack(">I", (kind << 24) | len(payload))) + list(payload)


hello = b'[1,"realm1",{}]'
put("rawsocket", "json_session", [0x06] + [0x7F, 0xF1, 0, 0] + rs_frame(0, hello) + rs_frame(1, b"ping") + rs_frame(2, b""))
put("rawsocket", "msgpack_small_reads", [0x02 | 0x10] + [0x7F, 0x22, 0, 0] + rs_frame(0, b"\x93\x01\xa6realm1\x80"))
put("rawsocket", "reserved_bits", [0x06] + [0x7F, 0x01, 0, 1])
put("rawsocket", "serializer_zero", [0x06] + [0x7F, 0x00, 0, 0])
put("rawsocket", "unknown_serializer", [0x06] + [0x7F, 0x13, 0, 0])
put("rawsocket", "peer_too_small", [0x0E] + [0x7F, 0x01, 0, 0])
put("rawsocket", "too_large", [0x02] + [0x7F, 0xF1, 0, 0] + rs_frame(0, b"x" * 5000))
put("rawsocket", "reserved_frame_type", [0x06] + [0x7F, 0xF1, 0, 0] + [0x03, 0, 0, 1, 0])
put("rawsocket", "not_rawsocket", [0x06] + list(b"GET / HTTP/1.1\r\n"))
put("rawsocket", "client_side", [0x07] + [0x7F, 0xF2, 0, 0] + rs_frame(0, b"\x93\x02\x01\x80") + rs_frame(1, b"hb"))
put("rawsocket", "client_refused", [0x07] + [0x7F, 0x10, 0, 0])

# ---- WAMP codecs ----
vectors = json.load(open(os.path.join(ROOT, "core", "tests", "vectors", "singlemessage.json")))
n = 0
for f in vectors["files"]:
    base = f["file"].replace("/", "_").replace(".json", "")
    for i, sample in enumerate(f.get("samples", [])):
        for j, h in enumerate(sample.get("json_hex", [])[:1]):
            put("wamp_json", f"{base}_{i}", bytes.fromhex(h))
            put("transcode", f"json_{base}_{i}", b"\x00" + bytes.fromhex(h))
        for j, h in enumerate(sample.get("msgpack_hex", [])[:1]):
            put("wamp_msgpack", f"{base}_{i}", bytes.fromhex(h))
            put("transcode", f"msgpack_{base}_{i}", b"\x01" + bytes.fromhex(h))
extra_json = {
    "publish_binary": b'[16,1,{},"t",["\\u0000AQID",{"n":[1,-2,3.5e10,null,false]}],{"x":"\\u0000"}]',
    "call_nested": b'[48,7,{"timeout":100},"p",[[[[[[1]]]]]],{"a":{"b":{"c":[]}}}]',
    "yield_progress": b'[70,3,{"progress":true},[1,"\\ud83d\\ude00"]]',
    "error_kwargs": b'[8,68,4,{},"app.error",[],{"why":"because"}]',
    "deep": b"[16,1,{},\"t\"," + b"[" * 70 + b"]" * 70 + b"]",
}
for name, data in extra_json.items():
    put("wamp_json", name, data)
    put("transcode", "json_" + name, b"\x00" + data)
put("transcode", "raw_json", b"\x02" + b'["a",{"b":[1,2,3]},"\\u0000AAEC"]')
put("transcode", "raw_msgpack", b"\x03" + bytes.fromhex("93a161c4030102038182a162c3"))
put("wamp_msgpack", "publish_bin_ext", bytes.fromhex("9510011c80a1749291c403010203d6ff00000001"))
put("wamp_msgpack", "call_floats", bytes.fromhex("9530cd01c880a17092cb400921fb54442d18ca3f800000"))

# ---- router ----
rng = random.Random(8)
for i in range(6):
    put("router_session", f"random_{i}", bytes(rng.randrange(256) for _ in range(200 + 100 * i)))
