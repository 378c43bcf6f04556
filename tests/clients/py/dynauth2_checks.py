"""Autobahn|Python (asyncio) checks of every dynamic authentication method, on WebSocket and
RawSocket, plus the refusals that need no authenticator.

Run by tests/tests/server_dynauth.rs against a node with three transports: a component
WebSocket (`--component-port`, path `/ws`: static anonymous as `backend`, and a static
ticket principal `ghost` whose role realm1 lacks), and a WebSocket (`--ws-port`, `/ws`) and
a RawSocket (`--raw-port`) transport where `anonymous`, `ticket`, `wampcra`, `cryptosign`
and WAMP-SCRAM are all decided by the dynamic authenticator `com.example.authenticate`:

    dynauth2_checks.py --component-port P --ws-port P --raw-port P \
        --transport websocket|rawsocket --serializer json|msgpack

The component registers the authenticator, which answers per `details.authmethod`: a role
for anonymous and ticket, the WAMP-CRA `secret` (plain, or salted with `salt`,
`iterations`, `keylen`), the cryptosign `pubkey`, the SCRAM credential (Autobahn's
`derive_scram_credential`); or raises. Checks (each prints
`{"check": NAME}`; a failure raises): `anonymous`, `ticket`, `ticket-rejected`, `wampcra`,
`wampcra-wrong-secret`, `wampcra-salted`, `wampcra-unknown`, `cryptosign`,
`cryptosign-wrong-key`, `scram` (the client also checks the router's server signature),
`scram-wrong-password`, `channel-binding-refused` (cryptosign asking for `tls-unique`, which
no transport here can give, or `tls-exporter`, which nobody defines: ABORT naming the
binding), and on the component transport `no-such-role` (the right ticket for a principal
whose role the realm lacks: ABORT `wamp.error.no_such_role`). Waits are bounded only so
that a bug fails.
"""

import argparse
import asyncio
import json
import sys

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig

WAIT = 10.0
SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
CRA_SECRET = "cra-secret"
SALTED_PASSWORD = "salted-password"
SALT = {"salt": "NaCl", "iterations": 100, "keylen": 32}
SCRAM_PASSWORD = "scram-password"


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(ApplicationSession):
    """Joins with one method; resolves `joined` with (session, details) or `left` with the
    ABORT reason."""

    def __init__(self, config, method, authid, secret, authextra, joined, left):
        super().__init__(config)
        self.my = (method, authid, secret, authextra)
        self.joined_f, self.left_f = joined, left
        self.scram = None

    def onConnect(self):
        method, authid, secret, authextra = self.my
        extra = dict(authextra or {})
        if method == "cryptosign":
            extra["pubkey"] = CryptosignKey.from_bytes(secret).public_key()
        if method == "scram":
            self.scram = auth.AuthScram(authid=authid, password=secret)
            extra.update(self.scram.authextra)
        self.join(self.config.realm, authmethods=[method], authid=authid, authextra=extra)

    def onChallenge(self, challenge):
        method, _, secret, _ = self.my
        if method == "ticket":
            return secret
        if method == "wampcra":
            key = secret
            if "salt" in challenge.extra:
                e = challenge.extra
                key = auth.derive_key(secret, e["salt"], e["iterations"], e["keylen"])
            return auth.compute_wcs(key, challenge.extra["challenge"]).decode("ascii")
        if method == "cryptosign":
            return CryptosignKey.from_bytes(secret).sign_challenge(challenge)
        if method == "scram":
            return self.scram.on_challenge(self, challenge).decode("ascii")
        raise RuntimeError(method)

    def onJoin(self, details):
        if self.scram is not None:
            # The router proves it knew the credential too.
            err = self.scram.on_welcome(self, details.authextra)
            assert err is None, err
        if not self.joined_f.done():
            self.joined_f.set_result((self, details))

    def onLeave(self, details):
        if not self.left_f.done():
            self.left_f.set_result((details.reason, details.message))
        self.disconnect()

    def onDisconnect(self):
        if not self.left_f.done():
            self.left_f.set_result(("disconnected", None))


class Checks:
    def __init__(self, args):
        self.args = args
        self.sessions = []

    async def join(self, method, authid=None, secret=None, authextra=None, transport=None, port=None):
        """(session, details) when joined, else (ABORT reason, message)."""
        loop = asyncio.get_running_loop()
        joined, left = loop.create_future(), loop.create_future()
        a = self.args
        ser = JsonSerializer() if a.serializer == "json" else MsgPackSerializer()
        transport = transport or a.transport

        def make():
            config = ComponentConfig(realm="realm1")
            return Client(config, method, authid, secret, authextra, joined, left)

        if transport == "websocket":
            port = port or a.ws_port
            factory = WampWebSocketClientFactory(make, url=f"ws://127.0.0.1:{port}/ws", serializers=[ser])
        else:
            port = a.raw_port
            factory = WampRawSocketClientFactory(make, serializer=ser)
        await loop.create_connection(factory, "127.0.0.1", port)
        done, _ = await asyncio.wait([joined, left], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        assert done, f"{method}/{authid}: neither joined nor refused"
        if joined.done():
            self.sessions.append(joined.result()[0])
            return joined.result()
        return left.result()

    async def joins(self, role, method, authid=None, secret=None):
        got = await self.join(method, authid, secret)
        assert isinstance(got[0], ApplicationSession), f"{method}/{authid} refused: {got}"
        d = got[1]
        assert (d.authrole, d.authmethod, d.authprovider) == (role, method, "dynamic"), d
        assert authid is None or d.authid == authid, d
        return d

    async def refused(self, reason, method, authid=None, secret=None, authextra=None, **kw):
        got = await self.join(method, authid, secret, authextra, **kw)
        assert not isinstance(got[0], ApplicationSession), f"{method}/{authid} joined: {got[1]}"
        assert got[0] == reason, f"{method}/{authid}: {got}, expected {reason}"
        return got[1]


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--component-port", type=int, required=True)
    p.add_argument("--ws-port", type=int, required=True)
    p.add_argument("--raw-port", type=int, required=True)
    p.add_argument("--transport", choices=["websocket", "rawsocket"], required=True)
    p.add_argument("--serializer", choices=["json", "msgpack"], required=True)
    c = Checks(p.parse_args())
    cport = c.args.component_port

    comp, d = await c.join("anonymous", transport="websocket", port=cport)
    assert isinstance(comp, ApplicationSession) and d.authrole == "backend", d
    seen = []

    def authenticate(realm, authid, details):
        method = details["authmethod"]
        seen.append((realm, authid, method, details))
        if method == "anonymous":
            return "guest"
        if method == "ticket":
            if details["ticket"] == "secret-user":
                return "user"
            raise ApplicationError("com.example.invalid_ticket", "no such ticket")
        if method == "wampcra" and authid == "peter":
            return {"role": "user", "secret": CRA_SECRET}
        if method == "wampcra" and authid == "salty":
            key = auth.derive_key(SALTED_PASSWORD, SALT["salt"], SALT["iterations"], SALT["keylen"])
            return dict(role="user", secret=key.decode("ascii"), **SALT)
        if method == "cryptosign" and authid == "alice":
            return {"role": "user", "pubkey": CryptosignKey.from_bytes(SEED).public_key()}
        if method == "scram" and authid == "sam":
            return dict(role="user", **auth.derive_scram_credential(authid, SCRAM_PASSWORD, b"salt-of-sam-1234"))
        raise ApplicationError("com.example.no_such_user", f"no {method} user {authid}")

    await comp.register(authenticate, "com.example.authenticate")

    d = await c.joins("guest", "anonymous")
    assert d.authid and seen[-1][2] == "anonymous", (d, seen[-1])
    say(check="anonymous")
    await c.joins("user", "ticket", "joe", "secret-user")
    assert seen[-1][3]["transport"]["type"] == c.args.transport, seen[-1]
    say(check="ticket")
    await c.refused("com.example.invalid_ticket", "ticket", "joe", "wrong")
    say(check="ticket-rejected")
    await c.joins("user", "wampcra", "peter", CRA_SECRET)
    say(check="wampcra")
    await c.refused("wamp.error.authentication_failed", "wampcra", "peter", "not-the-secret")
    say(check="wampcra-wrong-secret")
    await c.joins("user", "wampcra", "salty", SALTED_PASSWORD)
    say(check="wampcra-salted")
    await c.refused("com.example.no_such_user", "wampcra", "nobody", "x")
    say(check="wampcra-unknown")
    await c.joins("user", "cryptosign", "alice", SEED)
    assert seen[-1][3]["authextra"]["pubkey"] == CryptosignKey.from_bytes(SEED).public_key(), seen[-1]
    say(check="cryptosign")
    await c.refused("wamp.error.not_authorized", "cryptosign", "alice", OTHER_SEED)
    say(check="cryptosign-wrong-key")
    await c.joins("user", "scram", "sam", SCRAM_PASSWORD)
    say(check="scram")
    await c.refused("wamp.error.authentication_failed", "scram", "sam", "guess")
    say(check="scram-wrong-password")
    asked = len(seen)
    for binding in ["tls-unique", "tls-exporter"]:
        message = await c.refused(
            "wamp.error.not_authorized", "cryptosign", "alice", SEED, {"channel_binding": binding}
        )
        assert "channel binding" in message and binding in message, message
    assert len(seen) == asked, "the authenticator was asked about an impossible binding"
    say(check="channel-binding-refused")
    await c.refused("wamp.error.no_such_role", "ticket", "ghost", "boo", transport="websocket", port=cport)
    say(check="no-such-role")

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
