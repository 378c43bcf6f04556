"""Autobahn|Python (asyncio) checks of TLS and Unix-socket endpoints of a running node.

Run by tests/tests/server_tls.rs, which makes a test-only CA and certificates, starts the
real binary and passes their files here. One run exercises one endpoint:

    tls_checks.py --transport websocket|rawsocket --serializer json|msgpack
        (--port PORT [--tls --ca CA.pem [--cert C.pem --key K.pem]] | --unix PATH)
        [--expect joined|refused] [--cn NAME]

`joined` (the default): two sessions join realm1; one registers a procedure and
subscribes, the other calls and publishes; the results and the event must arrive. Prints
`{"session": ID}` per session and `{"check": NAME}` per check passed; with `--cn`, the
session details (`wamp.session.get`) must show that client certificate subject CN. `refused`: the
connection must end before a session exists (a missing or untrusted client certificate);
prints `{"check": "refused"}`. Failed checks raise, so a non-zero exit means failure. Waits
have timeouts only so a bug fails instead of hanging.
"""

import argparse
import asyncio
import json
import ssl
import sys

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions

WAIT = 10.0


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(ApplicationSession):
    def __init__(self, config, joined):
        super().__init__(config)
        self._joined = joined

    def onJoin(self, details):
        if not self._joined.done():
            self._joined.set_result(self)

    def onDisconnect(self):
        if not self._joined.done():
            self._joined.set_exception(ConnectionError("disconnected before WELCOME"))


def tls_context(args):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def join(args):
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    config = ComponentConfig(realm="realm1")
    serializer = JsonSerializer() if args.serializer == "json" else MsgPackSerializer()

    def make():
        return Client(config, joined)

    if args.transport == "websocket":
        scheme = "wss" if args.tls else "ws"
        url = f"{scheme}://127.0.0.1:{args.port or 80}/ws"
        factory = WampWebSocketClientFactory(make, url=url, serializers=[serializer])
    else:
        factory = WampRawSocketClientFactory(make, serializer=serializer)
    if args.unix:
        transport, protocol = await loop.create_unix_connection(factory, args.unix)
    elif args.tls:
        transport, protocol = await loop.create_connection(
            factory, "127.0.0.1", args.port, ssl=tls_context(args)
        )
    else:
        transport, protocol = await loop.create_connection(factory, "127.0.0.1", args.port)

    # Before the WebSocket or RawSocket handshake there is no session to tell of a lost
    # connection (with TLS 1.3 the server's verdict on a client certificate comes after the
    # client's handshake is done), so the transport's end is watched directly.
    lost_before = protocol.connection_lost

    def connection_lost(exc):
        if not joined.done():
            joined.set_exception(ConnectionError(f"connection lost before WELCOME: {exc!r}"))
        lost_before(exc)

    protocol.connection_lost = connection_lost
    if transport.is_closing() and not joined.done():
        raise ConnectionError("connection closed before WELCOME")
    session = await asyncio.wait_for(joined, WAIT)
    say(session=session._session_id)
    return session


async def joined(args):
    a = await join(args)
    b = await join(args)

    def echo(*args, **kwargs):
        return [list(args), kwargs]

    await a.register(echo, "com.tls.echo")
    result = await asyncio.wait_for(b.call("com.tls.echo", 1, "two", three=3), WAIT)
    assert result == [[1, "two"], {"three": 3}], result
    say(check="rpc")

    events = asyncio.Queue()
    await a.subscribe(lambda *a, **k: events.put_nowait((list(a), k)), "com.tls.topic")
    await b.publish(
        "com.tls.topic", "hello", big="x" * 70000, options=PublishOptions(acknowledge=True)
    )
    got = await asyncio.wait_for(events.get(), WAIT)
    assert got == (["hello"], {"big": "x" * 70000}), got[0]
    say(check="pubsub")

    if args.cn:
        # The verified client certificate's subject, as the router's session details show it.
        details = await asyncio.wait_for(a.call("wamp.session.get", a._session_id), WAIT)
        cn = details["transport"].get("peer_cert", {}).get("subject", {}).get("cn")
        assert cn == args.cn, details
        say(check="client-cn")

    for s in (a, b):
        s.leave()
        s.disconnect()


async def refused(args):
    try:
        await join(args)
    # Not OSError at large: a missing file must fail the run, not pass as a refusal.
    except (ssl.SSLError, ConnectionError) as e:
        print(f"refused as expected: {type(e).__name__}: {e}", file=sys.stderr)
        say(check="refused")
        return
    raise AssertionError("a session was joined where the connection must be refused")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["websocket", "rawsocket"], required=True)
    p.add_argument("--serializer", choices=["json", "msgpack"], required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--unix")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--expect", choices=["joined", "refused"], default="joined")
    p.add_argument("--cn", help="the client certificate CN the session details must show")
    args = p.parse_args()
    if args.expect == "joined":
        await joined(args)
    else:
        await refused(args)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
