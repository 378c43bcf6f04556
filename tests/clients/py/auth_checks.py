"""Autobahn|Python (asyncio) authentication checks against a running switchyard node.

Run by tests/tests/server_auth.rs, which starts the real binary with an `auth` section of
every static method (ticket, WAMP-CRA plain and salted, cryptosign, WAMP-SCRAM) on one
WebSocket and one RawSocket transport:

    auth_checks.py --transport websocket|rawsocket --serializer json|msgpack \
        --host 127.0.0.1 --ws-port PORT --raw-port PORT

For every method the right secret joins with the configured authid, role, method and
provider; a wrong secret, an unknown authid and a malformed AUTHENTICATE never join. Then a
restricted role is denied exactly what its permissions deny. Each passed check prints
`{"check": NAME}`; a failed one raises (non-zero exit). Waits are bounded so a bug fails.
"""

import argparse
import asyncio
import json
import os

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions, RegisterOptions, SubscribeOptions

WAIT = 10.0
SEED = bytes(range(32))


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(ApplicationSession):
    """Joins with one method; resolves `joined` with the session or `left` with the reason."""

    def __init__(self, config, method, authid, secret, joined, left, malformed=False):
        super().__init__(config)
        self.my_method, self.my_authid, self.my_secret = method, authid, secret
        self.joined_f, self.left_f, self.malformed = joined, left, malformed
        self.scram = None

    def onConnect(self):
        extra = {}
        if self.my_method == "cryptosign":
            extra["pubkey"] = CryptosignKey.from_bytes(self.my_secret).public_key()
        if self.my_method == "scram":
            self.scram = auth.AuthScram(authid=self.my_authid, password=self.my_secret)
            extra = self.scram.authextra
        self.join(self.config.realm, authmethods=[self.my_method], authid=self.my_authid, authextra=extra)

    def onChallenge(self, challenge):
        if self.malformed:
            # A raw AUTHENTICATE without its Extra and with a number for the signature.
            t = self._transport
            if hasattr(t, "sendMessage"):
                t.sendMessage(b"[5, 17]", isBinary=False)
            else:
                t.sendString(b"[5, 17]")
            return asyncio.get_running_loop().create_future()
        if self.my_method == "ticket":
            return self.my_secret
        if self.my_method == "wampcra":
            key = self.my_secret
            if "salt" in challenge.extra:
                key = auth.derive_key(self.my_secret, challenge.extra["salt"],
                                      challenge.extra["iterations"], challenge.extra["keylen"])
            return auth.compute_wcs(key, challenge.extra["challenge"]).decode("ascii")
        if self.my_method == "cryptosign":
            return CryptosignKey.from_bytes(self.my_secret).sign_challenge(challenge)
        if self.my_method == "scram":
            return self.scram.on_challenge(self, challenge).decode("ascii")
        raise RuntimeError(self.my_method)

    def onJoin(self, details):
        if self.scram is not None:
            err = self.scram.on_welcome(self, details.authextra)
            assert err is None, err
        if not self.joined_f.done():
            self.joined_f.set_result((self, details))

    def onLeave(self, details):
        if not self.left_f.done():
            self.left_f.set_result(details.reason)
        self.disconnect()

    def onDisconnect(self):
        if not self.left_f.done():
            self.left_f.set_result("disconnected")


class Node:
    def __init__(self, args):
        self.args = args

    async def join(self, method, authid, secret, malformed=False):
        """(session, details) when joined, else the ABORT reason."""
        loop = asyncio.get_running_loop()
        joined, left = loop.create_future(), loop.create_future()
        ser = JsonSerializer() if self.args.serializer == "json" else MsgPackSerializer()

        def make():
            return Client(ComponentConfig(realm="realm1"), method, authid, secret, joined, left, malformed)

        if self.args.transport == "websocket":
            port = self.args.ws_port
            factory = WampWebSocketClientFactory(make, url=f"ws://{self.args.host}:{port}/ws", serializers=[ser])
        else:
            port = self.args.raw_port
            factory = WampRawSocketClientFactory(make, serializer=ser)
        await loop.create_connection(factory, self.args.host, port)
        done, _ = await asyncio.wait([joined, left], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        assert done, f"{method}/{authid}: neither joined nor refused"
        if joined.done():
            return joined.result()
        return left.result()

    async def joins(self, method, authid, secret, role):
        got = await self.join(method, authid, secret)
        assert isinstance(got, tuple), f"{method}/{authid} refused: {got}"
        session, d = got
        assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (authid, role, method, "static"), d
        return session

    async def refused(self, method, authid, secret, malformed=False):
        got = await self.join(method, authid, secret, malformed)
        assert not isinstance(got, tuple), f"{method}/{authid} joined with a bad secret"
        allowed = {"wamp.error.not_authorized", "wamp.error.authentication_failed",
                   "wamp.error.protocol_violation", "disconnected"}
        assert got in allowed, got


async def expect_denied(awaitable):
    try:
        await asyncio.wait_for(awaitable, WAIT)
    except ApplicationError as e:
        assert e.error == "wamp.error.not_authorized", e.error
        return
    raise AssertionError("allowed, expected wamp.error.not_authorized")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", required=True)
    ap.add_argument("--serializer", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ws-port", type=int, required=True)
    ap.add_argument("--raw-port", type=int, required=True)
    node = Node(ap.parse_args())

    joe = await node.joins("ticket", "joe", "joe-ticket", "frontend")
    await node.joins("ticket", "envjoe", os.environ["HOME"], "frontend")
    await node.refused("ticket", "joe", "wrong-ticket")
    await node.refused("ticket", "nobody", "joe-ticket")
    await node.refused("ticket", "joe", "joe-ticket", malformed=True)
    say(check="ticket")

    backend = await node.joins("wampcra", "peter", "peter-secret", "backend")
    await node.joins("wampcra", "salty", "salty-password", "backend")
    await node.refused("wampcra", "peter", "not-it")
    await node.refused("wampcra", "salty", "not-it")
    await node.refused("wampcra", "nobody", "peter-secret")
    say(check="wampcra")

    await node.joins("cryptosign", "alice", SEED, "backend")
    await node.refused("cryptosign", "alice", bytes(32))
    await node.refused("cryptosign", "nobody", SEED)
    await node.refused("cryptosign", "alice", SEED, malformed=True)
    say(check="cryptosign")

    await node.joins("scram", "carol", "carol-password", "backend")
    await node.refused("scram", "carol", "guess")
    await node.refused("scram", "nobody", "carol-password")
    say(check="scram")

    # The restricted role `frontend` (joe): call and subscribe under com.example., publish
    # only on com.example.chat, subscribe on app..status (wildcard); nothing on
    # com.example.admin (exact) and nothing else.
    seen = asyncio.Queue()

    def add(x, y, details=None):
        seen.put_nowait((details.caller_authid, details.caller_authrole))
        return x + y

    await backend.register(add, "com.example.add", RegisterOptions(details=True))
    await backend.register(lambda: "secret", "com.example.admin")
    assert await asyncio.wait_for(joe.call("com.example.add", 2, 3), WAIT) == 5
    assert await asyncio.wait_for(seen.get(), WAIT) == ("joe", "frontend")
    await expect_denied(joe.call("com.example.admin"))
    await expect_denied(joe.register(lambda: 1, "com.example.mine"))
    await asyncio.wait_for(joe.subscribe(lambda *a: None, "com.example.news"), WAIT)
    await expect_denied(joe.publish("com.example.news", 1, options=PublishOptions(acknowledge=True)))
    await asyncio.wait_for(joe.publish("com.example.chat", 1, options=PublishOptions(acknowledge=True)), WAIT)
    await asyncio.wait_for(joe.subscribe(lambda *a: None, "app..status", SubscribeOptions(match="wildcard")), WAIT)
    await expect_denied(joe.subscribe(lambda *a: None, "app..other", SubscribeOptions(match="wildcard")))
    await expect_denied(joe.call("app.x.status"))
    await expect_denied(joe.subscribe(lambda *a: None, "org.other.topic"))
    say(check="permissions")

    # The session meta API carries the authentication facts.
    info = await asyncio.wait_for(backend.call("wamp.session.get", joe._session_id), WAIT)
    assert (info["authid"], info["authrole"], info["authmethod"], info["authprovider"]) == (
        "joe", "frontend", "ticket", "static"), info
    say(check="meta")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:
        import sys
        import traceback
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
