"""Autobahn|Python (asyncio) checks of cookie authentication (Crossbar's `cbtid`).

Run by tests/tests/server_dynauth.rs against a node whose WebSocket transport tracks
cookies (`"cookie": {"max_age": MAX_AGE}`) and accepts `cookie`, `anonymous` (role
`backend`) and dynamic `ticket` (authenticator `com.example.authenticate`).

    cookie_checks.py --port PORT --max-age SECONDS [--reconnects N]

A component registers the authenticator. A browser-like client connects without a cookie,
gets one (`Set-Cookie: cbtid=...`) and authenticates by ticket; a second connection
presenting the cookie and offering only `cookie` joins as the same principal with no ticket
(and is not given a new cookie); after `max_age` the cookie no longer authenticates and a
new one is set. Each passed check prints `{"check": NAME}`; any failure raises.

With `--reconnects N` (a node of several worker processes) the ticket session prints
`{"ticket_session": ID}`, then N connections presenting the cookie each join as the same
principal by cookie and print `{"cookie_session": ID}` (check `cookie-reconnects`), so the
test can see a cookie set through one worker accepted by another; forgery and expiry are
left to the single-process run.
"""

import argparse
import asyncio
import json
import sys

from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig

from watched import Watched

WAIT = 10.0


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(Watched):
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
        return self._ticket


async def connect(port, authmethods, authid=None, ticket=None, cookie=None):
    """(session or None, ABORT reason, the Set-Cookie header of the upgrade or None)."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    left = loop.create_future()
    config = ComponentConfig(realm="realm1")
    holder = {}

    def make():
        s = Client(config, joined, left, authmethods, authid, ticket)
        holder["s"] = s
        return s

    headers = {"Cookie": cookie} if cookie else None
    factory = WampWebSocketClientFactory(
        make, url=f"ws://127.0.0.1:{port}/ws", serializers=[JsonSerializer()], headers=headers
    )
    _, proto = await loop.create_connection(factory, "127.0.0.1", port)
    try:
        session = await asyncio.wait_for(joined, WAIT)
        reason = None
    except ConnectionError:
        session, reason = None, await asyncio.wait_for(left, WAIT)
    set_cookie = (getattr(proto, "http_headers", None) or {}).get("set-cookie")
    return session, reason, set_cookie


def token(set_cookie):
    assert set_cookie and set_cookie.startswith("cbtid="), set_cookie
    return set_cookie.split(";")[0]


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-age", type=int, required=True)
    p.add_argument("--reconnects", type=int, default=0)
    args = p.parse_args()

    comp, why, _ = await connect(args.port, ["anonymous"])
    assert comp is not None, why

    def authenticate(realm, authid, details):
        return "user" if details.get("ticket") == "secret" else "nobody"

    await comp.register(authenticate, "com.example.authenticate")

    # First visit: a cookie is set; `cookie` is offered but not bound yet, so ticket runs.
    a, why, set_cookie = await connect(args.port, ["cookie", "ticket"], "joe", "secret")
    assert a is not None, why
    assert (a.details.authid, a.details.authmethod) == ("joe", "ticket"), a.details
    assert "max-age=%d" % args.max_age in set_cookie.lower(), set_cookie
    cookie = token(set_cookie)
    say(check="cookie-set")

    # Reconnect with the cookie, offering only `cookie`: the same principal, no secret.
    b, why, again = await connect(args.port, ["cookie"], cookie=cookie)
    assert b is not None, why
    d = b.details
    assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (
        "joe",
        "user",
        "cookie",
        "cookie",
    ), d
    assert again is None, again
    say(check="cookie-reconnect")

    if args.reconnects:
        say(ticket_session=a._session_id)
        say(cookie_session=b._session_id)
        for _ in range(args.reconnects):
            r, why, _ = await connect(args.port, ["cookie"], cookie=cookie)
            assert r is not None, why
            assert (r.details.authid, r.details.authmethod) == ("joe", "cookie"), r.details
            say(cookie_session=r._session_id)
            r.leave()
        say(check="cookie-reconnects")
        for s in (comp, a, b):
            if s.is_attached():
                s.leave()
        await asyncio.sleep(0)
        say(done=True)
        return

    # A forged cookie does nothing (and gets replaced).
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    c, why, replaced = await connect(args.port, ["cookie"], cookie=forged)
    assert c is None and why == "wamp.error.no_auth_method", (c, why)
    assert replaced is not None
    say(check="cookie-forged")

    # After max_age the cookie is refused.
    await asyncio.sleep(args.max_age + 1)
    e, why, renewed = await connect(args.port, ["cookie"], cookie=cookie)
    assert e is None and why == "wamp.error.no_auth_method", (e, why)
    assert renewed is not None and token(renewed) != cookie, renewed
    say(check="cookie-expired")

    for s in (comp, a, b):
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
