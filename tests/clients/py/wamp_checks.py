"""Autobahn|Python (asyncio) client checks against a running switchyard node.

Run by tests/tests/server_clients.rs, which starts the real binary with the two-realm
Crossbar fixture and reads the node's log. One run exercises one transport and serializer:

    wamp_checks.py --transport websocket|rawsocket --serializer json|msgpack \
        --host 127.0.0.1 --ws-port PORT --raw-port PORT --cores N \
        --scenario routing|garbage|hold|failover

Every check that fails raises, so a non-zero exit code means a failed check. The program
prints one JSON line per joined session (`{"session": ID, "realm": R}`) so that the Rust
test can look up, in the node's log, the core that holds each session; it picks sessions
on different cores (the node allocates session ids with `id % cores == core`, and the
test checks that against the log) so that every check crosses cores. It does not measure
time: waits have generous timeouts only so that a bug fails instead of hanging.
"""

import argparse
import asyncio
import re
import json
import socket
import sys

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import (
    CallOptions,
    ComponentConfig,
    PublishOptions,
    RegisterOptions,
    SubscribeOptions,
)

from watched import Watched

WAIT = 10.0


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(Watched):
    """A session that resolves futures on join and leave instead of running an app."""

    def __init__(self, config, joined, left):
        super().__init__(config)
        self._joined = joined
        self._left = left


class Node:
    def __init__(self, args):
        self.args = args
        self.sessions = []

    def serializer(self):
        if self.args.serializer == "json":
            return JsonSerializer()
        return MsgPackSerializer()

    async def join(self, realm="realm1"):
        loop = asyncio.get_running_loop()
        joined = loop.create_future()
        left = loop.create_future()
        config = ComponentConfig(realm=realm)

        def make():
            return Client(config, joined, left)

        if self.args.transport == "websocket":
            port = self.args.ws_port
            url = f"ws://{self.args.host}:{port}/ws"
            factory = WampWebSocketClientFactory(
                make, url=url, serializers=[self.serializer()]
            )
        else:
            port = self.args.raw_port
            factory = WampRawSocketClientFactory(make, serializer=self.serializer())
        await loop.create_connection(factory, self.args.host, port)
        session = await asyncio.wait_for(joined, WAIT)
        session.left = left
        self.sessions.append(session)
        say(session=session._session_id, realm=realm)
        return session

    async def pair(self, realm="realm1"):
        """Two sessions of `realm` on different cores (ids are allocated `id % cores == core`)."""
        cores = self.args.cores
        by_core = {}
        for _ in range(64):
            s = await self.join(realm)
            by_core.setdefault(s._session_id % cores, s)
            if len(by_core) >= min(2, cores):
                break
        assert len(by_core) >= min(2, cores), f"all sessions on one core: {by_core}"
        found = sorted(by_core.items())
        return found[0][1], found[-1][1]


async def recv(queue):
    return await asyncio.wait_for(queue.get(), WAIT)


async def expect_error(awaitable, uris):
    try:
        await asyncio.wait_for(awaitable, WAIT)
    except ApplicationError as e:
        assert e.error in uris, f"error {e.error}, expected one of {uris}"
        return e.error
    raise AssertionError(f"no error, expected one of {uris}")


async def routing(node):
    a, b = await node.pair("realm1")
    backend = node.args.transport == "rawsocket"

    # RPC across cores, with caller disclosure (the role's permission discloses callers).
    async def add2(x, y, details=None):
        return {"sum": x + y, "caller": details.caller}

    await b.register(add2, "com.example.add2", RegisterOptions(details=True))
    res = await asyncio.wait_for(a.call("com.example.add2", 2, 3), WAIT)
    assert res == {"sum": 5, "caller": a._session_id}, res
    say(check="rpc")

    # PubSub across cores, with publisher disclosure and an acknowledged publication.
    events = asyncio.Queue()
    await b.subscribe(
        lambda *args, details=None: events.put_nowait((args, details)),
        "com.example.topic",
        SubscribeOptions(details=True),
    )
    await a.publish("com.example.topic", "hello", 1, options=PublishOptions(acknowledge=True))
    args, details = await recv(events)
    assert args == ("hello", 1), args
    assert details.publisher == a._session_id, details
    say(check="pubsub")

    # Progressive results arrive in order, then the final result.
    async def count(n, details=None):
        for i in range(n):
            details.progress(i)
        return n

    await b.register(count, "com.example.count", RegisterOptions(details=True))
    progress = []
    res = await asyncio.wait_for(
        a.call("com.example.count", 4, options=CallOptions(on_progress=progress.append)),
        WAIT,
    )
    assert (progress, res) == ([0, 1, 2, 3], 4), (progress, res)
    say(check="progressive")

    # Pattern registrations: prefix and wildcard, the actual procedure in the details.
    def which(kind):
        def f(details=None):
            return [kind, details.procedure]

        return f

    await b.register(which("prefix"), "com.example.pre.", RegisterOptions(match="prefix", details=True))
    await b.register(which("wildcard"), "com.example..wild", RegisterOptions(match="wildcard", details=True))
    res = await asyncio.wait_for(a.call("com.example.pre.x.y"), WAIT)
    assert res == ["prefix", "com.example.pre.x.y"], res
    res = await asyncio.wait_for(a.call("com.example.any.wild"), WAIT)
    assert res == ["wildcard", "com.example.any.wild"], res
    say(check="pattern-registrations")

    # Pattern subscriptions: the actual topic in the details, each subscription once.
    pattern_events = asyncio.Queue()
    await b.subscribe(
        lambda *args, details=None: pattern_events.put_nowait(("prefix", details.topic, args)),
        "com.example.ev.",
        SubscribeOptions(match="prefix", details=True),
    )
    await b.subscribe(
        lambda *args, details=None: pattern_events.put_nowait(("wildcard", details.topic, args)),
        "com.example..status",
        SubscribeOptions(match="wildcard", details=True),
    )
    await a.publish("com.example.ev.status", 7, options=PublishOptions(acknowledge=True))
    got = sorted([await recv(pattern_events), await recv(pattern_events)])
    assert got == [
        ("prefix", "com.example.ev.status", (7,)),
        ("wildcard", "com.example.ev.status", (7,)),
    ], got
    say(check="pattern-subscriptions")

    # Shared registration: two callees on different cores, round robin between them.
    c, d = await node.pair("realm1")

    def named(who):
        return lambda: who

    await c.register(named("c"), "com.example.shared", RegisterOptions(invoke="roundrobin"))
    await d.register(named("d"), "com.example.shared", RegisterOptions(invoke="roundrobin"))
    got = [await asyncio.wait_for(a.call("com.example.shared"), WAIT) for _ in range(4)]
    assert sorted(got) == ["c", "c", "d", "d"], got
    assert got[0] != got[1], got
    await expect_error(
        c.register(named("x"), "com.example.shared", RegisterOptions(invoke="single")),
        {"wamp.error.procedure_exists_with_different_invocation_policy"},
    )
    say(check="shared-registration")

    # The meta API answers for every core.
    count_all = await asyncio.wait_for(a.call("wamp.session.count"), WAIT)
    assert count_all >= 4, count_all
    ids = await asyncio.wait_for(a.call("wamp.session.list"), WAIT)
    for s in (a, b, c, d):
        assert s._session_id in ids, (s._session_id, ids)
    info = await asyncio.wait_for(a.call("wamp.session.get", b._session_id), WAIT)
    assert info["session"] == b._session_id, info
    assert info["transport"]["type"] == node.args.transport, info
    # Crossbar's `created`: ISO 8601, UTC, milliseconds.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["created"]), info
    reg = await asyncio.wait_for(a.call("wamp.registration.lookup", "com.example.add2"), WAIT)
    callees = await asyncio.wait_for(a.call("wamp.registration.list_callees", reg), WAIT)
    assert callees == [b._session_id], callees
    joins = asyncio.Queue()
    await a.subscribe(lambda details: joins.put_nowait(details), "wamp.session.on_join")
    e = await node.join("realm1")
    joined = await recv(joins)
    assert joined["session"] == e._session_id, joined
    say(check="meta")

    # Authorization: the role allows nothing outside its permissions. (The RawSocket
    # transport of the fixture authenticates as `backend`, which may do everything.)
    if not backend:
        await expect_error(a.call("org.other.proc"), {"wamp.error.not_authorized"})
        await expect_error(
            a.publish("org.other.topic", options=PublishOptions(acknowledge=True)),
            {"wamp.error.not_authorized"},
        )
        await expect_error(
            a.register(named("x"), "org.other.proc"), {"wamp.error.not_authorized"}
        )
        say(check="denials")

    # Two realms: realm2's own permissions, and nothing crosses from one realm to the other.
    r1, r2 = await node.pair("realm2")

    def echo(*args):
        return list(args)

    await r2.register(echo, "org.sample.echo")
    res = await asyncio.wait_for(r1.call("org.sample.echo", 1, "two"), WAIT)
    assert res == [1, "two"], res
    news = asyncio.Queue()
    await r2.subscribe(lambda x: news.put_nowait(x), "org.sample.news")
    await r1.publish("org.sample.news", 42, options=PublishOptions(acknowledge=True))
    assert await recv(news) == 42
    if not backend:
        await expect_error(
            r1.publish("org.sample.echo", options=PublishOptions(acknowledge=True)),
            {"wamp.error.not_authorized"},
        )
        await expect_error(r1.register(echo, "org.sample.other"), {"wamp.error.not_authorized"})
    await expect_error(
        a.call("org.sample.echo"),
        {"wamp.error.not_authorized", "wamp.error.no_such_procedure"},
    )
    say(check="two-realms")


def garbage_connections(host, ws_port, raw_port):
    """Connections that break the protocol: raw garbage, a RawSocket session that sends a
    message before HELLO, and a WebSocket that sends an unmasked frame. Returns the sockets
    (still open, so the node has to cope with them alive) and what each one received."""
    seen = []
    s1 = socket.create_connection((host, raw_port), WAIT)
    s1.sendall(b"\x16\x03\x01garbage that is neither HTTP nor RawSocket\r\n\r\n")
    s2 = socket.create_connection((host, raw_port), WAIT)
    s2.sendall(b"\x7f\xf1\x00\x00")
    seen.append(("rawsocket-handshake", s2.recv(4)))
    body = b'[70, 1, {}, [1]]'
    s2.sendall(len(body).to_bytes(4, "big") + body)
    s3 = upgraded(host, ws_port, seen)
    # An unmasked client frame is a WebSocket protocol error: the server closes with 1002.
    s3.sendall(b"\x81\x02[]")
    # A WAMP protocol violation over WebSocket (YIELD before HELLO): ABORT, then close 1002
    # as Crossbar does.
    s4 = upgraded(host, ws_port, seen)
    body = b'[70, 1, {}, [1]]'
    key = b"\x01\x02\x03\x04"
    s4.sendall(b"\x81" + bytes([0x80 | len(body)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(body)))
    return [s1, s2, s3, s4], seen


def upgraded(host, port, seen):
    s = socket.create_connection((host, port), WAIT)
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "websocket upgrade refused"
        head += chunk
    seen.append(("websocket-upgrade", head.split(b"\r\n")[0]))
    return s


def frames(data):
    """The (opcode, payload) of each unmasked server frame in `data`."""
    out = []
    while len(data) >= 2:
        n = data[1] & 0x7F
        at = 2
        if n == 126:
            n, at = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(data[2:10], "big"), 10
        out.append((data[0] & 0x0F, data[at : at + n]))
        data = data[at + n :]
    return out


def read_until_closed(sock):
    sock.settimeout(WAIT)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk


async def garbage(node):
    a, b = await node.pair("realm1")
    await b.register(lambda x: x * 2, "com.example.double")
    socks, seen = await asyncio.get_running_loop().run_in_executor(
        None, garbage_connections, node.args.host, node.args.ws_port, node.args.raw_port
    )
    assert seen[0][0] == "rawsocket-handshake" and seen[0][1][:1] == b"\x7f", seen
    assert seen[1:] == [("websocket-upgrade", b"HTTP/1.1 101 Switching Protocols")] * 2, seen
    tails = await asyncio.get_running_loop().run_in_executor(
        None, lambda: [read_until_closed(s) for s in socks]
    )
    # The WebSocket ends with a close frame carrying 1002 (protocol error), as Crossbar does.
    assert frames(tails[2]) == [(8, (1002).to_bytes(2, "big"))], tails[2]
    abort, close = frames(tails[3])
    assert abort[0] == 1 and json.loads(abort[1])[0] == 3, abort
    assert json.loads(abort[1])[2] == "wamp.error.protocol_violation", abort
    assert close == (8, (1002).to_bytes(2, "big")), close
    # The RawSocket session was told ABORT before its connection closed.
    assert b"wamp.error.protocol_violation" in tails[1], tails[1]
    res = await asyncio.wait_for(a.call("com.example.double", 21), WAIT)
    assert res == 42, res
    c = await node.join("realm1")
    res = await asyncio.wait_for(c.call("com.example.double", 5), WAIT)
    assert res == 10, res
    for s in socks:
        s.close()
    say(check="garbage")


async def hold(node):
    """Joins two sessions on different cores, says `ready`, and waits for the node to
    end them; prints each session's GOODBYE reason."""
    a, b = await node.pair("realm1")
    say(ready=True)
    for s in (a, b):
        reason = await asyncio.wait_for(s.left, 60)
        say(left=s._session_id, reason=reason)


async def read_line():
    """The next line the Rust test writes on stdin (it drives the `failover` scenario)."""
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 120)
    return line.strip()


async def failover(node):
    """For a node of worker processes with one shard each, run as `--cores 2`: two
    sessions on shard 0 (the surviving worker) and one on shard 1 (the victim). After the
    test writes `killed` (it killed worker 1), the victim's session is gone and the two
    survivors still call and publish to each other. After `restarted`, a new session on
    the restarted worker calls the old callee and receives the old publisher's event."""
    cores = node.args.cores
    found = {0: [], 1: []}
    for _ in range(128):
        s = await node.join("realm1")
        mine = found.get(s._session_id % cores)
        if mine is not None and len(mine) < 2:
            mine.append(s)
        if len(found[0]) >= 2 and found[1]:
            break
    assert len(found[0]) >= 2 and found[1], f"sessions not on both shards: {found}"
    (a, b), victim = found[0], found[1][0]

    async def echo(x, details=None):
        return {"x": x, "caller": details.caller}

    await a.register(echo, "com.example.failover.echo", RegisterOptions(details=True))
    events = asyncio.Queue()
    await b.subscribe(
        lambda x, details=None: events.put_nowait((x, details)),
        "com.example.failover.news",
        SubscribeOptions(details=True),
    )
    res = await asyncio.wait_for(victim.call("com.example.failover.echo", 0), WAIT)
    assert res == {"x": 0, "caller": victim._session_id}, res
    say(check="before")
    say(ready=True)

    assert await read_line() == "killed"
    await asyncio.wait_for(victim.left, WAIT)
    say(check="victim-gone")
    res = await asyncio.wait_for(b.call("com.example.failover.echo", 1), WAIT)
    assert res == {"x": 1, "caller": b._session_id}, res
    await a.publish(
        "com.example.failover.news", 1, options=PublishOptions(acknowledge=True)
    )
    x, details = await recv(events)
    assert (x, details.publisher) == (1, a._session_id), (x, details)
    say(check="survivors")

    assert await read_line() == "restarted"
    new = None
    for _ in range(128):
        s = await node.join("realm1")
        if s._session_id % cores == 1:
            new = s
            break
    assert new is not None, "no session on the restarted worker"
    res = await asyncio.wait_for(new.call("com.example.failover.echo", 2), WAIT)
    assert res == {"x": 2, "caller": new._session_id}, res
    news = asyncio.Queue()
    await new.subscribe(
        lambda x, details=None: news.put_nowait((x, details)),
        "com.example.failover.news",
        SubscribeOptions(details=True),
    )
    await a.publish(
        "com.example.failover.news", 2, options=PublishOptions(acknowledge=True)
    )
    x, details = await recv(news)
    assert (x, details.publisher) == (2, a._session_id), (x, details)
    x, _ = await recv(events)
    assert x == 2, x
    say(check="rejoined")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["websocket", "rawsocket"], required=True)
    p.add_argument("--serializer", choices=["json", "msgpack"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ws-port", type=int, required=True)
    p.add_argument("--raw-port", type=int, required=True)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument(
        "--scenario", choices=["routing", "garbage", "hold", "failover"], required=True
    )
    args = p.parse_args()
    node = Node(args)
    scenarios = {"routing": routing, "garbage": garbage, "hold": hold, "failover": failover}
    await scenarios[args.scenario](node)
    for s in node.sessions:
        if s.is_attached():
            s.leave()
    await asyncio.sleep(0)
    say(done=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # the Rust test shows stderr; exit non-zero
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
