"""The session class the client check scripts share: it reports when it joined and why it left.

A script's own session class derives from `Watched` and sets `self._joined` and `self._left`
(asyncio futures) in its constructor; `Watched` resolves `_joined` with the session at WELCOME
(keeping the details in `self.details`), `_left` with the reason the router gave (or None when
the connection just closed), and fails `_joined` with ConnectionError when the connection
closed before any WELCOME. It does not connect, authenticate or check anything itself.
"""

from autobahn.asyncio.wamp import ApplicationSession


class Watched(ApplicationSession):
    """An ApplicationSession that resolves `self._joined` and `self._left`."""

    def onJoin(self, details):
        self.details = details
        if not self._joined.done():
            self._joined.set_result(self)

    def onLeave(self, details):
        if not self._left.done():
            self._left.set_result(details.reason)
        self.disconnect()

    def onDisconnect(self):
        if not self._joined.done():
            self._joined.set_exception(ConnectionError("disconnected before WELCOME"))
        if not self._left.done():
            self._left.set_result(None)
