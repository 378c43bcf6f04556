"""Autobahn|Python (asyncio) checks of the `tls` authentication method (client certificates).

Run by tests/tests/server_tlsauth.rs, which makes a test-only CA, client certificates
`alice` (configured as a static `tls` principal by its SHA-1 fingerprint), `bob` (same CA,
not configured) and `mallory` (another CA), and starts a node with three WebSocket
transports: `--static-port` (TLS requiring a client certificate, static `tls`),
`--open-port` (TLS without client certificates, static `tls`) and `--dynamic-port` (TLS
requiring a client certificate, `tls` decided by the dynamic authenticator
`com.example.tls_authenticate`), plus a plain `--plain-port` where a component joins
anonymously (role `backend`) to register that authenticator.

    tlsauth_checks.py --static-port P --open-port P --dynamic-port P --plain-port P \
        --ca CA.pem --certs DIR --serializer json|msgpack

Checks (each prints `{"check": NAME}`; a failure raises, exit non-zero):
`static-right-cert` (alice joins as authid alice, role certified, authmethod tls, provider
static), `static-unknown-cert` (bob gets ABORT `wamp.error.not_authorized`, no session),
`static-other-ca` (mallory's TLS handshake is refused), `static-no-cert` (no certificate on
the endpoint requiring one: refused), `open-no-cert` (no certificate where none is
required: ABORT, no session), `dynamic-right-cert` (the authenticator sees the fingerprint
and subject CN in `details.transport.client_cert` and admits alice), `dynamic-refused`
(it raises for bob: ABORT with its error URI). Waits are bounded only so a bug fails.
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys

from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig

from watched import Watched

WAIT = 10.0


def say(**fields):
    print(json.dumps(fields), flush=True)


def fingerprint(pem_path):
    """The certificate's SHA-1 fingerprint as pyOpenSSL (and Crossbar) prints it."""
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    digest = hashlib.sha1(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 40, 2))


class Client(Watched):
    """Joins offering `authmethods`; resolves `joined` (the session) or `left` (reason)."""

    def __init__(self, config, authmethods, joined, left):
        super().__init__(config)
        self._authmethods, self._joined, self._left = authmethods, joined, left

    def onConnect(self):
        self.join(self.config.realm, authmethods=self._authmethods)


class Checks:
    def __init__(self, args):
        self.args = args
        self.sessions = []

    def context(self, cert):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.args.ca)
        if cert:
            d = self.args.certs
            ctx.load_cert_chain(os.path.join(d, cert + ".crt"), os.path.join(d, cert + ".key"))
        return ctx

    async def connect(self, port, cert, authmethods, tls=True):
        """("joined", session) | ("aborted", reason) | ("refused", why)."""
        loop = asyncio.get_running_loop()
        joined, left = loop.create_future(), loop.create_future()
        config = ComponentConfig(realm="realm1")
        serializer = JsonSerializer() if self.args.serializer == "json" else MsgPackSerializer()
        scheme = "wss" if tls else "ws"
        factory = WampWebSocketClientFactory(
            lambda: Client(config, authmethods, joined, left),
            url=f"{scheme}://127.0.0.1:{port}/ws",
            serializers=[serializer],
        )
        try:
            kwargs = {"ssl": self.context(cert)} if tls else {}
            transport, protocol = await loop.create_connection(factory, "127.0.0.1", port, **kwargs)
        except (ssl.SSLError, ConnectionError) as e:
            return "refused", repr(e)
        # With TLS 1.3 the server's verdict on the client certificate arrives after the
        # client's handshake is done: a lost connection before WELCOME is a refusal.
        lost_before = protocol.connection_lost

        def connection_lost(exc):
            if not joined.done():
                joined.set_exception(ConnectionError(f"lost before WELCOME: {exc!r}"))
            lost_before(exc)

        protocol.connection_lost = connection_lost
        try:
            session = await asyncio.wait_for(joined, WAIT)
        except (ssl.SSLError, ConnectionError) as e:
            reason = await asyncio.wait_for(left, WAIT) if left.done() else None
            if reason:
                return "aborted", reason
            return "refused", repr(e)
        self.sessions.append(session)
        say(session=session._session_id)
        return "joined", session


async def main():
    p = argparse.ArgumentParser()
    for name in ["static-port", "open-port", "dynamic-port", "plain-port"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--certs", required=True)
    p.add_argument("--serializer", choices=["json", "msgpack"], required=True)
    args = p.parse_args()
    c = Checks(args)

    kind, s = await c.connect(args.static_port, "alice", ["tls"])
    assert kind == "joined", (kind, s)
    d = s.details
    assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (
        "alice",
        "certified",
        "tls",
        "static",
    ), d
    say(check="static-right-cert")
    kind, why = await c.connect(args.static_port, "bob", ["tls"])
    assert (kind, why) == ("aborted", "wamp.error.not_authorized"), (kind, why)
    say(check="static-unknown-cert")
    kind, why = await c.connect(args.static_port, "mallory", ["tls"])
    assert kind == "refused", (kind, why)
    say(check="static-other-ca")
    kind, why = await c.connect(args.static_port, None, ["tls"])
    assert kind == "refused", (kind, why)
    say(check="static-no-cert")
    kind, why = await c.connect(args.open_port, None, ["tls"])
    assert (kind, why) == ("aborted", "wamp.error.not_authorized"), (kind, why)
    say(check="open-no-cert")

    # The dynamic authenticator, registered by a component on the plain transport.
    kind, comp = await c.connect(args.plain_port, None, ["anonymous"], tls=False)
    assert kind == "joined", (kind, comp)
    alice_sha1 = fingerprint(os.path.join(args.certs, "alice.crt"))
    seen = []

    def authenticate(realm, authid, details):
        cert = details["transport"]["client_cert"]
        seen.append((realm, details["authmethod"], cert))
        if cert["sha1"] == alice_sha1:
            return {"role": "certified", "authid": "cn:" + cert["subject"]["cn"]}
        raise ApplicationError("com.example.unknown_certificate", "not one of ours")

    await comp.register(authenticate, "com.example.tls_authenticate")
    kind, s = await c.connect(args.dynamic_port, "alice", ["tls"])
    assert kind == "joined", (kind, s)
    d = s.details
    assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (
        "cn:alice",
        "certified",
        "tls",
        "dynamic",
    ), d
    assert seen[-1][:2] == ("realm1", "tls"), seen
    say(check="dynamic-right-cert")
    kind, why = await c.connect(args.dynamic_port, "bob", ["tls"])
    assert (kind, why) == ("aborted", "com.example.unknown_certificate"), (kind, why)
    assert seen[-1][2]["subject"]["cn"] == "bob", seen
    say(check="dynamic-refused")

    for s in c.sessions:
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
