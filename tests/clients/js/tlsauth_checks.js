// Autobahn|JS (Node) checks of the `tls` authentication method, over TLS RawSocket.
//
// Run by tests/tests/server_tlsauth.rs:
//
//   node tlsauth_checks.js --raw-port P --ca CA.pem --certs DIR
//
// Autobahn|JS on Node opens WebSocket connections with Node's built-in WebSocket, which has
// no option for a client certificate, and RawSocket connections with `net.connect`. This
// program replaces `net.connect` by `tls.connect` with the client certificate of the check
// at hand (the only change: Autobahn|JS's RawSocket framing and session code run as
// shipped), so that Autobahn|JS joins a TLS RawSocket transport whose `auth` has a static
// `tls` section. `alice` (configured) joins as authid alice, role certified, authmethod
// tls; `bob` (same CA, not configured) gets ABORT `wamp.error.not_authorized`; `mallory`
// (another CA) is refused by the TLS layer. Each passed check prints {"check": NAME}; a
// failure exits non-zero. Waits time out only so a bug fails.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const tls = require('tls');
const autobahn = require('autobahn');

const WAIT = 10000;

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function say(fields) {
  console.log(JSON.stringify(fields));
}

const ca = fs.readFileSync(arg('ca'));
let clientCert = null;
// Autobahn|JS's RawSocket code does not report a socket error (such as the server's TLS
// alert for a certificate it does not trust); it is reported to the pending join from here.
let socketFailed = () => {};
net.connect = (options) => {
  const socket = tls.connect(Object.assign({}, options, {
    ca,
    servername: 'localhost',
    cert: fs.readFileSync(path.join(arg('certs'), clientCert + '.crt')),
    key: fs.readFileSync(path.join(arg('certs'), clientCert + '.key')),
  }));
  socket.on('error', (e) => socketFailed('tls: ' + (e.code || e.message)));
  return socket;
};

// Resolves with the WELCOME details, or {refused: reason} (the ABORT reason, or the
// transport's end when there was no session).
function join(cert) {
  clientCert = cert;
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      transports: [{ type: 'rawsocket', host: '127.0.0.1', port: Number(arg('raw-port')) }],
      realm: 'realm1',
      max_retries: 0,
      authmethods: ['tls'],
    });
    const timer = setTimeout(() => reject(new Error(`${cert}: no answer`)), WAIT);
    let joined = false;
    socketFailed = (why) => {
      if (!joined) {
        clearTimeout(timer);
        resolve({ refused: why });
      }
    };
    connection.onopen = (session, details) => {
      joined = true;
      clearTimeout(timer);
      connection.onclose = () => true;
      connection.close();
      resolve(details);
    };
    connection.onclose = (reason, details) => {
      clearTimeout(timer);
      resolve({ refused: (details && details.reason) || reason });
      return true;
    };
    connection.open();
  });
}

async function main() {
  const d = await join('alice');
  const got = [d.authid, d.authrole, d.authmethod, d.authprovider];
  if (JSON.stringify(got) !== JSON.stringify(['alice', 'certified', 'tls', 'static'])) {
    throw new Error('alice: ' + JSON.stringify(d));
  }
  say({ check: 'js-right-cert' });
  const bob = await join('bob');
  if (bob.refused !== 'wamp.error.not_authorized') {
    throw new Error('bob: ' + JSON.stringify(bob));
  }
  say({ check: 'js-unknown-cert' });
  const mallory = await join('mallory');
  if (!mallory.refused || mallory.refused.startsWith('wamp.error.')) {
    throw new Error('mallory was not refused by TLS: ' + JSON.stringify(mallory));
  }
  say({ check: 'js-other-ca' });
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  },
);
