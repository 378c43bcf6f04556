// Autobahn|JS (Node) client checks against a running switchyard node.
//
// Run by tests/tests/server_clients.rs, which starts the real binary with the two-realm
// Crossbar fixture and reads the node's log. One run exercises one transport and serializer:
//
//   node wamp_checks.js --transport websocket|rawsocket --serializer json|msgpack \
//       --host 127.0.0.1 --ws-port PORT --raw-port PORT --cores N --scenario routing|hold
//
// Autobahn|JS's RawSocket transport speaks JSON only, so RawSocket/MessagePack is covered by
// the Python checks. On Node < 22 its WebSocket transport needs Node's global WebSocket,
// which the test enables with --experimental-websocket. A failed check exits non-zero. The
// program prints one JSON line per joined session so that the Rust test can find each
// session's core in the node's log; it pairs sessions on different cores (ids are allocated
// `id % cores == core`). It measures no time: waits time out only so a bug fails.

'use strict';

const autobahn = require('autobahn');

const WAIT = 10000;

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const args = {
  transport: arg('transport'),
  serializer: arg('serializer'),
  host: arg('host', '127.0.0.1'),
  wsPort: Number(arg('ws-port')),
  rawPort: Number(arg('raw-port')),
  cores: Number(arg('cores', '2')),
  scenario: arg('scenario'),
};

function say(fields) {
  console.log(JSON.stringify(fields));
}

function assert(ok, what) {
  if (!ok) {
    throw new Error('check failed: ' + JSON.stringify(what));
  }
}

function equal(a, b) {
  assert(JSON.stringify(a) === JSON.stringify(b), { got: a, expected: b });
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out: ' + what)), WAIT);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

const connections = [];

function join(realm) {
  const options = { realm, max_retries: 0 };
  if (args.transport === 'websocket') {
    options.url = `ws://${args.host}:${args.wsPort}/ws`;
    options.serializers = [
      args.serializer === 'json'
        ? new autobahn.serializer.JSONSerializer()
        : new autobahn.serializer.MsgpackSerializer(),
    ];
  } else {
    options.transports = [{ type: 'rawsocket', host: args.host, port: args.rawPort }];
  }
  const connection = new autobahn.Connection(options);
  connections.push(connection);
  const joined = new Promise((resolve, reject) => {
    connection.onopen = (session) => resolve(session);
    connection.onclose = (reason, details) => {
      if (connection.left) {
        connection.left(details.reason || reason);
      }
      reject(new Error('closed before WELCOME: ' + reason));
      return true;
    };
  });
  connection.open();
  return within(joined, 'join ' + realm).then((session) => {
    session.connection = connection;
    say({ session: session.id, realm });
    return session;
  });
}

async function pair(realm) {
  const byCore = new Map();
  const need = Math.min(2, args.cores);
  for (let i = 0; i < 64 && byCore.size < need; i++) {
    const s = await join(realm);
    if (!byCore.has(s.id % args.cores)) {
      byCore.set(s.id % args.cores, s);
    }
  }
  assert(byCore.size >= need, 'all sessions on one core');
  const found = [...byCore.entries()].sort((x, y) => x[0] - y[0]).map((e) => e[1]);
  return [found[0], found[found.length - 1]];
}

async function expectError(promise, uris) {
  try {
    await within(promise, 'an error in ' + uris);
  } catch (e) {
    assert(uris.includes(e.error), { error: e.error || String(e), expected: uris });
    return;
  }
  throw new Error('no error, expected one of ' + uris);
}

function queue() {
  const items = [];
  const waiters = [];
  return {
    push(x) {
      const w = waiters.shift();
      if (w) w(x);
      else items.push(x);
    },
    next() {
      if (items.length) return Promise.resolve(items.shift());
      return within(new Promise((r) => waiters.push(r)), 'an event');
    },
  };
}

async function routing() {
  const [a, b] = await pair('realm1');
  const backend = args.transport === 'rawsocket';

  // RPC across cores, with caller disclosure (the role's permission discloses callers).
  await b.register('com.example.add2', (xs, kw, details) => ({ sum: xs[0] + xs[1], caller: details.caller }));
  equal(await within(a.call('com.example.add2', [2, 3]), 'call'), { sum: 5, caller: a.id });
  say({ check: 'rpc' });

  // PubSub across cores, with publisher disclosure.
  const events = queue();
  await b.subscribe('com.example.topic', (xs, kw, details) => events.push([xs, details.publisher]));
  await a.publish('com.example.topic', ['hello', 1], {}, { acknowledge: true });
  equal(await events.next(), [['hello', 1], a.id]);
  say({ check: 'pubsub' });

  // Progressive results in order, then the final result.
  await b.register('com.example.count', (xs, kw, details) => {
    for (let i = 0; i < xs[0]; i++) details.progress([i]);
    return xs[0];
  });
  const progress = [];
  const final = await within(
    new Promise((resolve, reject) => {
      a.call('com.example.count', [4], {}, { receive_progress: true }).then(resolve, reject, (p) => progress.push(p));
    }),
    'progressive call',
  );
  equal([progress, final], [[0, 1, 2, 3], 4]);
  say({ check: 'progressive' });

  // Pattern registrations and subscriptions: the actual URI in the details.
  await b.register('com.example.pre.', (xs, kw, d) => ['prefix', d.procedure], { match: 'prefix' });
  await b.register('com.example..wild', (xs, kw, d) => ['wildcard', d.procedure], { match: 'wildcard' });
  equal(await within(a.call('com.example.pre.x.y'), 'prefix call'), ['prefix', 'com.example.pre.x.y']);
  equal(await within(a.call('com.example.any.wild'), 'wildcard call'), ['wildcard', 'com.example.any.wild']);
  say({ check: 'pattern-registrations' });
  const patternEvents = queue();
  await b.subscribe('com.example.ev.', (xs, kw, d) => patternEvents.push(['prefix', d.topic, xs]), { match: 'prefix' });
  await b.subscribe('com.example..status', (xs, kw, d) => patternEvents.push(['wildcard', d.topic, xs]), {
    match: 'wildcard',
  });
  await a.publish('com.example.ev.status', [7], {}, { acknowledge: true });
  const got = [await patternEvents.next(), await patternEvents.next()].sort();
  equal(got, [
    ['prefix', 'com.example.ev.status', [7]],
    ['wildcard', 'com.example.ev.status', [7]],
  ]);
  say({ check: 'pattern-subscriptions' });

  // Shared registration: two callees on different cores, round robin.
  const [c, d] = await pair('realm1');
  await c.register('com.example.shared', () => 'c', { invoke: 'roundrobin' });
  await d.register('com.example.shared', () => 'd', { invoke: 'roundrobin' });
  const calls = [];
  for (let i = 0; i < 4; i++) calls.push(await within(a.call('com.example.shared'), 'shared call'));
  equal([...calls].sort(), ['c', 'c', 'd', 'd']);
  assert(calls[0] !== calls[1], calls);
  say({ check: 'shared-registration' });

  // The meta API answers for every core.
  const ids = await within(a.call('wamp.session.list'), 'session.list');
  for (const s of [a, b, c, d]) assert(ids.includes(s.id), { missing: s.id, ids });
  const info = await within(a.call('wamp.session.get', [b.id]), 'session.get');
  equal([info.session, info.transport.type], [b.id, args.transport]);
  // Crossbar's `created`: ISO 8601, UTC, milliseconds.
  assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(info.created), { created: info.created });
  const joins = queue();
  await a.subscribe('wamp.session.on_join', (xs) => joins.push(xs[0]));
  const e = await join('realm1');
  equal((await joins.next()).session, e.id);
  say({ check: 'meta' });

  // Authorization denials (the fixture's RawSocket role `backend` may do everything).
  if (!backend) {
    await expectError(a.call('org.other.proc'), ['wamp.error.not_authorized']);
    await expectError(a.publish('org.other.topic', [], {}, { acknowledge: true }), ['wamp.error.not_authorized']);
    await expectError(a.register('org.other.proc', () => 1), ['wamp.error.not_authorized']);
    say({ check: 'denials' });
  }

  // Two realms.
  const [r1, r2] = await pair('realm2');
  await r2.register('org.sample.echo', (xs) => xs);
  equal(await within(r1.call('org.sample.echo', [1, 'two']), 'echo'), [1, 'two']);
  await expectError(a.call('org.sample.echo'), ['wamp.error.not_authorized', 'wamp.error.no_such_procedure']);
  say({ check: 'two-realms' });
}

async function hold() {
  const [a, b] = await pair('realm1');
  const left = [a, b].map(
    (s) =>
      new Promise((resolve) => {
        s.connection.left = resolve;
      }),
  );
  say({ ready: true });
  const reasons = await Promise.all(left);
  [a, b].forEach((s, i) => say({ left: s.id, reason: reasons[i] }));
}

async function main() {
  await { routing, hold }[args.scenario]();
  for (const c of connections) {
    if (c.isOpen) c.close();
  }
  say({ done: true });
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED:', e && e.stack ? e.stack : e);
    process.exit(1);
  },
);
