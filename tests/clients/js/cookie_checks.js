// Autobahn|JS (Node) checks of cookie authentication (Crossbar's `cbtid`).
//
// Run by tests/tests/server_dynauth.rs against the node of `cookie_checks.py` (WebSocket
// transport tracking cookies, `auth` with `cookie`, `anonymous` as `backend` and dynamic
// `ticket` decided by `com.example.authenticate`):
//
//   node cookie_checks.js --port P
//
// A browser keeps the cookie a WebSocket upgrade sets and sends it on the next one; Node's
// built-in WebSocket (which Autobahn|JS uses) has no cookie jar and does not show the
// upgrade's response headers. So this program gets its cookie from a bare HTTP upgrade
// (Node's `http`, closed at once: no session, so the cookie is not bound yet), and hands it
// to every later Autobahn|JS connection through a WebSocket subclass that adds a `Cookie`
// header. The component registers the authenticator; then a connection presenting the
// cookie and offering `cookie` and `ticket` authenticates by ticket (binding the cookie to
// joe), and a later one offering only `cookie` joins as joe by cookie; without the cookie
// it is refused. Each passed check prints {"check": NAME}; a failure exits non-zero.
'use strict';

const crypto = require('crypto');
const http = require('http');
const autobahn = require('autobahn');

const WAIT = 10000;

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(arg('port'));

function say(fields) {
  console.log(JSON.stringify(fields));
}

let cookieHeader = null;
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, cookieHeader ? { protocols, headers: { Cookie: cookieHeader } } : protocols);
  }
};

// The `name=value` of the cookie a bare WebSocket upgrade gets.
function fetchCookie() {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/ws',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': 'wamp.2.json',
      },
    });
    const timer = setTimeout(() => reject(new Error('no upgrade answer')), WAIT);
    req.on('upgrade', (res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      const set = (res.headers['set-cookie'] || [])[0];
      if (!set || !set.startsWith('cbtid=')) {
        reject(new Error('no cbtid cookie: ' + JSON.stringify(res.headers)));
        return;
      }
      resolve(set.split(';')[0]);
    });
    req.on('response', (res) => reject(new Error('no upgrade: HTTP ' + res.statusCode)));
    req.on('error', reject);
    req.end();
  });
}

// Resolves with {session, details, connection} when welcomed, or {refused: reason}.
function join(authmethods, authid, ticket) {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url: `ws://127.0.0.1:${port}/ws`,
      realm: 'realm1',
      max_retries: 0,
      authmethods,
      authid,
      onchallenge: () => ticket,
    });
    const timer = setTimeout(() => reject(new Error(`${authmethods}: no answer`)), WAIT);
    connection.onopen = (session, details) => {
      clearTimeout(timer);
      resolve({ session, details, connection });
    };
    connection.onclose = (reason, details) => {
      clearTimeout(timer);
      resolve({ refused: (details && details.reason) || reason });
      return true;
    };
    connection.open();
  });
}

function close(joined) {
  joined.connection.onclose = () => true;
  joined.connection.close();
}

function expect(joined, authid, authmethod) {
  if (joined.refused) {
    throw new Error(`refused (${joined.refused}), expected ${authid} by ${authmethod}`);
  }
  const d = joined.details;
  if (d.authid !== authid || d.authmethod !== authmethod) {
    throw new Error(`expected ${authid} by ${authmethod}: ${JSON.stringify(d)}`);
  }
}

async function main() {
  const comp = await join(['anonymous']);
  if (comp.refused || comp.details.authrole !== 'backend') {
    throw new Error('component: ' + JSON.stringify(comp.refused || comp.details));
  }
  await comp.session.register('com.example.authenticate', (args) =>
    args[2].ticket === 'secret' ? 'user' : 'nobody',
  );

  cookieHeader = await fetchCookie();
  const first = await join(['cookie', 'ticket'], 'joe', 'secret');
  expect(first, 'joe', 'ticket');
  say({ check: 'js-cookie-bound' });
  close(first);

  const again = await join(['cookie']);
  expect(again, 'joe', 'cookie');
  if (again.details.authrole !== 'user' || again.details.authprovider !== 'cookie') {
    throw new Error('by cookie: ' + JSON.stringify(again.details));
  }
  say({ check: 'js-cookie-reconnect' });
  close(again);

  cookieHeader = null;
  const without = await join(['cookie']);
  if (without.refused !== 'wamp.error.no_auth_method') {
    throw new Error('without the cookie: ' + JSON.stringify(without.refused || without.details));
  }
  say({ check: 'js-no-cookie' });
  close(comp);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  },
);
