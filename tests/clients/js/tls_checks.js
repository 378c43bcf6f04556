// Autobahn|JS (Node) checks of a secure WebSocket (wss://) endpoint of a running node.
//
// Run by tests/tests/server_tls.rs, which makes a test-only CA, starts the real binary with
// a TLS transport, and runs this with NODE_EXTRA_CA_CERTS naming the CA file, so that
// Node's TLS trusts the node's certificate without any option in the program:
//
//   node tls_checks.js --serializer json|msgpack --port PORT
//
// Two sessions join realm1 over wss://127.0.0.1:PORT/ws; one registers and subscribes, the
// other calls and publishes (one message larger than a TLS record). Prints
// `{"session": ID}` per session and `{"check": NAME}` per check passed; a failed check exits
// non-zero. Waits time out only so a bug fails instead of hanging.

'use strict';

const autobahn = require('autobahn');

const WAIT = 10000;

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const args = { serializer: arg('serializer'), port: Number(arg('port')) };

function say(fields) {
  console.log(JSON.stringify(fields));
}

function equal(a, b) {
  if (JSON.stringify(a) !== JSON.stringify(b)) {
    throw new Error('check failed: ' + JSON.stringify({ got: a, expected: b }));
  }
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out: ' + what)), WAIT);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

const connections = [];

function join() {
  const connection = new autobahn.Connection({
    realm: 'realm1',
    max_retries: 0,
    url: `wss://127.0.0.1:${args.port}/ws`,
    serializers: [
      args.serializer === 'json'
        ? new autobahn.serializer.JSONSerializer()
        : new autobahn.serializer.MsgpackSerializer(),
    ],
  });
  connections.push(connection);
  const joined = new Promise((resolve, reject) => {
    connection.onopen = (session) => resolve(session);
    connection.onclose = (reason) => {
      reject(new Error('closed before WELCOME: ' + reason));
      return true;
    };
  });
  connection.open();
  return within(joined, 'join').then((session) => {
    say({ session: session.id });
    return session;
  });
}

async function main() {
  const a = await join();
  const b = await join();
  await a.register('com.tls.echo', (xs, kw) => [xs, kw]);
  equal(await within(b.call('com.tls.echo', [1, 'two'], { three: 3 }), 'call'), [[1, 'two'], { three: 3 }]);
  say({ check: 'rpc' });

  const big = 'x'.repeat(70000);
  let onEvent;
  const got = new Promise((resolve) => {
    onEvent = resolve;
  });
  await within(a.subscribe('com.tls.topic', (xs, kw) => onEvent([xs, kw])), 'subscribe');
  await within(
    b.publish('com.tls.topic', ['hello'], { big }, { acknowledge: true }),
    'publish'
  );
  equal(await within(got, 'event'), [['hello'], { big }]);
  say({ check: 'pubsub' });
  for (const c of connections) {
    c.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  }
);
