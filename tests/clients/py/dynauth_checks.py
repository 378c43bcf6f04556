"""Autobahn|Python (asyncio) checks of dynamic authentication and authorization.

Run by tests/tests/server_dynauth.rs against a node whose WebSocket transport lets
`anonymous` in as `backend` and hands `ticket` to the dynamic authenticator
`com.example.authenticate`; realm1's role `user` is decided by the dynamic authorizer
`com.example.authorize`; the node's `dynamic_auth_timeout` is short.

    dynauth_checks.py --port PORT --serializer json|msgpack

A component session (anonymous, role `backend`) registers both procedures, then ticket
clients join: the authenticator accepts with a role string or a principal dictionary,
rejects with an application error, fails with a Python exception, or never answers; the
authorizer allows, denies, raises, answers with `cache`, or never answers. Each passed
check prints `{"check": NAME}`; every joined session prints `{"session": ID}`. Any failed
check raises (non-zero exit). Waits are bounded only so that a bug fails.
"""

import argparse
import asyncio
import json
import sys

from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions, RegisterOptions

from watched import Watched

WAIT = 10.0


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(Watched):
    """Joins with the given authmethods/authid, answers a ticket challenge, and resolves
    `joined` (with the session) or `left` (with the ABORT/GOODBYE reason)."""

    def __init__(self, config, joined, left, authmethods, authid, ticket):
        super().__init__(config)
        self._joined = joined
        self._left = left
        self._authmethods = authmethods
        self._authid = authid
        self._ticket = ticket

    def onConnect(self):
        self.join(self.config.realm, authmethods=self._authmethods, authid=self._authid)

    def onChallenge(self, challenge):
        assert challenge.method == "ticket", challenge
        return self._ticket


class Node:
    def __init__(self, args):
        self.args = args
        self.sessions = []

    async def connect(self, authmethods, authid=None, ticket=None):
        """(session or None, reason the router gave when it refused)."""
        loop = asyncio.get_running_loop()
        joined = loop.create_future()
        left = loop.create_future()
        config = ComponentConfig(realm="realm1")

        def make():
            return Client(config, joined, left, authmethods, authid, ticket)

        serializer = JsonSerializer() if self.args.serializer == "json" else MsgPackSerializer()
        url = f"ws://127.0.0.1:{self.args.port}/ws"
        factory = WampWebSocketClientFactory(make, url=url, serializers=[serializer])
        await loop.create_connection(factory, "127.0.0.1", self.args.port)
        try:
            session = await asyncio.wait_for(joined, WAIT)
        except ConnectionError:
            return None, await asyncio.wait_for(left, WAIT)
        session.left = left
        self.sessions.append(session)
        say(session=session._session_id)
        return session, None


async def expect_error(awaitable, uri):
    try:
        await asyncio.wait_for(awaitable, WAIT)
    except ApplicationError as e:
        assert e.error == uri, f"error {e.error}, expected {uri}"
        return
    raise AssertionError(f"no error, expected {uri}")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--serializer", choices=["json", "msgpack"], required=True)
    node = Node(p.parse_args())

    # The component: anonymous on this transport means role `backend`.
    comp, why = await node.connect(["anonymous"])
    assert comp is not None, why
    assert comp.details.authrole == "backend", comp.details
    seen = {"authenticate": [], "authorize": []}

    async def authenticate(realm, authid, details):
        seen["authenticate"].append((realm, authid, details))
        ticket = details["ticket"]
        if ticket == "secret-user":
            return "user"
        if ticket == "secret-guest":
            return {"role": "guest", "authid": authid + "-x"}
        if ticket == "reject":
            raise ApplicationError("com.example.invalid_ticket", "no such ticket")
        if ticket == "crash":
            raise ValueError("the authenticator has a bug")
        if ticket == "silent":
            await asyncio.sleep(WAIT * 2)
        return "nobody"

    async def authorize(details, uri, action, options):
        seen["authorize"].append((details["authid"], uri, action))
        if uri.startswith("com.example.allowed"):
            return True
        if uri == "com.example.cached":
            return {"allow": True, "cache": True}
        if uri == "com.example.disclosed":
            return {"allow": True, "disclose": True}
        if uri == "com.example.raise":
            raise ApplicationError("com.example.authorizer_failed")
        if uri == "com.example.slow":
            await asyncio.sleep(WAIT * 2)
        return False

    def whoami(details=None):
        return details.caller

    await comp.register(authenticate, "com.example.authenticate")
    await comp.register(authorize, "com.example.authorize")
    await comp.register(lambda x: x, "com.example.allowed.echo")
    await comp.register(lambda: "c", "com.example.cached")
    await comp.register(whoami, "com.example.disclosed", RegisterOptions(details=True))

    # The authenticator decides joins.
    user, why = await node.connect(["ticket"], "joe", "secret-user")
    assert user is not None, why
    d = user.details
    assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (
        "joe",
        "user",
        "ticket",
        "dynamic",
    ), d
    realm, authid, details = seen["authenticate"][-1]
    assert (realm, authid) == ("realm1", "joe"), seen
    assert details["authmethod"] == "ticket" and details["transport"]["type"] == "websocket"
    say(check="accept-role")
    guest, why = await node.connect(["ticket"], "ann", "secret-guest")
    assert guest is not None, why
    assert (guest.details.authid, guest.details.authrole) == ("ann-x", "guest"), guest.details
    say(check="accept-principal")
    s, why = await node.connect(["ticket"], "eve", "reject")
    assert s is None and why == "com.example.invalid_ticket", why
    say(check="reject")
    s, why = await node.connect(["ticket"], "eve", "crash")
    assert s is None and why == "wamp.error.runtime_error", why
    say(check="raise")
    s, why = await node.connect(["ticket"], "eve", "silent")
    assert s is None and why == "wamp.error.authentication_failed", why
    say(check="timeout")
    s, why = await node.connect(["ticket"], "eve", "unknown-role")
    assert s is None and why == "wamp.error.no_such_role", why
    say(check="no-such-role")

    # The authorizer decides the `user` session's actions.
    assert await asyncio.wait_for(user.call("com.example.allowed.echo", 7), WAIT) == 7
    assert seen["authorize"][-1] == ("joe", "com.example.allowed.echo", "call"), seen
    await asyncio.wait_for(user.register(lambda: 1, "com.example.allowed.mine"), WAIT)
    assert await asyncio.wait_for(comp.call("com.example.allowed.mine"), WAIT) == 1
    say(check="allow")
    ack = PublishOptions(acknowledge=True)
    await expect_error(user.publish("com.example.denied", options=ack), "wamp.error.not_authorized")
    await expect_error(user.subscribe(lambda: None, "com.example.denied"), "wamp.error.not_authorized")
    say(check="deny")
    await expect_error(user.call("com.example.raise"), "wamp.error.not_authorized")
    say(check="authorizer-raises")
    await expect_error(user.call("com.example.slow"), "wamp.error.not_authorized")
    say(check="authorizer-timeout")
    before = len(seen["authorize"])
    for _ in range(3):
        assert await asyncio.wait_for(user.call("com.example.cached"), WAIT) == "c"
    cached = [a for a in seen["authorize"][before:] if a[1] == "com.example.cached"]
    assert len(cached) == 1, seen["authorize"][before:]
    say(check="cache")
    assert await asyncio.wait_for(user.call("com.example.disclosed"), WAIT) == user._session_id
    say(check="disclose")
    # Static roles are not asked about.
    asked = len(seen["authorize"])
    assert await asyncio.wait_for(guest.call("com.example.allowed.echo", 1), WAIT) == 1
    assert len(seen["authorize"]) == asked, seen["authorize"][asked:]
    say(check="static-role-not-asked")

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
