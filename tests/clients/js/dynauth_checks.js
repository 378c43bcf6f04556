// Autobahn|JS (Node) checks of dynamic authentication, over WebSocket or RawSocket (JSON).
//
// Run by tests/tests/server_dynauth.rs with the node of `dynauth2_checks.py`:
//
//   node dynauth_checks.js --component-port P --ws-port P --raw-port P \
//       --transport websocket|rawsocket
//
// A component joins the component transport anonymously (role `backend`) and registers
// the node's authenticator `com.example.authenticate` (the Python programs that ran before
// have left, so the procedure is free). It answers per authmethod: a role for anonymous and ticket, the WAMP-CRA secret (plain or
// salted, derived with Autobahn|JS's own derive_key), the cryptosign public key. Clients on
// the chosen transport then join with each method and the right secret (authprovider
// `dynamic`), and are refused with a wrong secret, a wrong key or an unknown authid.
// Autobahn|JS has no WAMP-SCRAM. Each passed check prints {"check": NAME}; a failure exits
// non-zero. Waits time out only so a bug fails.
'use strict';

const autobahn = require('autobahn');
const nacl = require('tweetnacl');

const WAIT = 10000;

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const transport = arg('transport');
const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const OTHER_SEED = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const SALT = { salt: 'NaCl', iterations: 100, keylen: 32 };

function say(fields) {
  console.log(JSON.stringify(fields));
}

function transports(where) {
  if (where === 'rawsocket') {
    return [{ type: 'rawsocket', host: '127.0.0.1', port: Number(arg('raw-port')) }];
  }
  const port = where === 'component' ? arg('component-port') : arg('ws-port');
  return [{ type: 'websocket', url: `ws://127.0.0.1:${Number(port)}/ws` }];
}

// Resolves with {session, details} when welcomed, or {refused: reason}.
function join(where, method, authid, onchallenge, authextra) {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      transports: transports(where),
      realm: 'realm1',
      max_retries: 0,
      authmethods: [method],
      authid,
      authextra,
      onchallenge,
    });
    const timer = setTimeout(() => reject(new Error(`${method}/${authid}: no answer`)), WAIT);
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

async function joins(method, authid, onchallenge, role, authextra) {
  const got = await join(transport, method, authid, onchallenge, authextra);
  if (got.refused) {
    throw new Error(`${method}/${authid} refused: ${got.refused}`);
  }
  const d = got.details;
  const have = [d.authrole, d.authmethod, d.authprovider];
  const want = [role, method, 'dynamic'];
  if (JSON.stringify(have) !== JSON.stringify(want) || (authid && d.authid !== authid)) {
    throw new Error(`${method}/${authid}: ${JSON.stringify(d)}`);
  }
  got.connection.onclose = () => true;
  got.connection.close();
}

async function refused(reason, method, authid, onchallenge, authextra) {
  const got = await join(transport, method, authid, onchallenge, authextra);
  if (!got.refused) {
    got.connection.close();
    throw new Error(`${method}/${authid} joined with a bad secret`);
  }
  if (got.refused !== reason) {
    throw new Error(`${method}/${authid}: refused with ${got.refused}, expected ${reason}`);
  }
}

function cra(secret) {
  return (session, method, extra) => {
    let key = secret;
    if (extra.salt) {
      key = autobahn.auth_cra.derive_key(secret, extra.salt, extra.iterations, extra.keylen);
    }
    return autobahn.auth_cra.sign(key, extra.challenge);
  };
}

function signer(seed) {
  const pair = nacl.sign.keyPair.fromSeed(seed);
  return {
    pubkey: Buffer.from(pair.publicKey).toString('hex'),
    onchallenge: (session, method, extra) => autobahn.auth_cryptosign.sign_challenge(pair, extra),
  };
}

async function main() {
  const comp = await join('component', 'anonymous');
  if (comp.refused || comp.details.authrole !== 'backend') {
    throw new Error('component: ' + JSON.stringify(comp.refused || comp.details));
  }
  const alice = signer(SEED);
  const saltedKey = autobahn.auth_cra.derive_key('salted-password', SALT.salt, SALT.iterations, SALT.keylen);
  const authenticate = (args) => {
    const [, authid, details] = args;
    switch (details.authmethod) {
      case 'anonymous':
        return 'guest';
      case 'ticket':
        if (details.ticket === 'secret-user') return 'user';
        throw new autobahn.Error('com.example.invalid_ticket', ['no such ticket']);
      case 'wampcra':
        if (authid === 'peter') return { role: 'user', secret: 'cra-secret' };
        if (authid === 'salty') return Object.assign({ role: 'user', secret: saltedKey }, SALT);
        break;
      case 'cryptosign':
        if (authid === 'alice') return { role: 'user', pubkey: alice.pubkey };
        break;
      default:
    }
    throw new autobahn.Error('com.example.no_such_user', [`no ${details.authmethod} user ${authid}`]);
  };
  await comp.session.register('com.example.authenticate', authenticate);

  await joins('anonymous', undefined, undefined, 'guest');
  say({ check: 'anonymous' });
  await joins('ticket', 'joe', () => 'secret-user', 'user');
  await refused('com.example.invalid_ticket', 'ticket', 'joe', () => 'wrong');
  say({ check: 'ticket' });
  await joins('wampcra', 'peter', cra('cra-secret'), 'user');
  await joins('wampcra', 'salty', cra('salted-password'), 'user');
  await refused('wamp.error.authentication_failed', 'wampcra', 'peter', cra('not-it'));
  await refused('com.example.no_such_user', 'wampcra', 'nobody', cra('x'));
  say({ check: 'wampcra' });
  await joins('cryptosign', 'alice', alice.onchallenge, 'user', { pubkey: alice.pubkey });
  const mallory = signer(OTHER_SEED);
  await refused('wamp.error.not_authorized', 'cryptosign', 'alice', mallory.onchallenge, { pubkey: mallory.pubkey });
  say({ check: 'cryptosign' });

  comp.connection.onclose = () => true;
  comp.connection.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  },
);
