// Autobahn|JS (Node) authentication checks against a running switchyard node.
//
// Run by tests/tests/server_auth.rs with the same node as the Python checks:
//
//   node auth_checks.js --host 127.0.0.1 --ws-port PORT
//
// Over WebSocket (JSON): ticket, WAMP-CRA (plain and salted, with Autobahn|JS's own
// derive_key and sign) and cryptosign (Autobahn|JS's tweetnacl signer) join with the right
// secret and the configured authid, role, method and provider; a wrong secret and an unknown
// authid never join. Autobahn|JS has no WAMP-SCRAM. A failed check exits non-zero; waits
// time out only so a bug fails.
'use strict';

const autobahn = require('autobahn');
const nacl = require('tweetnacl');

const WAIT = 10000;

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const url = `ws://${arg('host', '127.0.0.1')}:${Number(arg('ws-port'))}/ws`;
const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);

function say(fields) {
  console.log(JSON.stringify(fields));
}

// Resolves with the WELCOME details, or with {refused: reason} when the node never welcomes.
function join(method, authid, onchallenge, authextra) {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url,
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

async function joins(method, authid, onchallenge, role, authextra) {
  const d = await join(method, authid, onchallenge, authextra);
  const got = [d.authid, d.authrole, d.authmethod, d.authprovider];
  const want = [authid, role, method, 'static'];
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${method}/${authid}: ${JSON.stringify(d)}`);
  }
}

async function refused(method, authid, onchallenge, authextra) {
  const d = await join(method, authid, onchallenge, authextra);
  if (!d.refused) {
    throw new Error(`${method}/${authid} joined with a bad secret`);
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

function sign(seed) {
  const pair = nacl.sign.keyPair.fromSeed(seed);
  return {
    pubkey: Buffer.from(pair.publicKey).toString('hex'),
    onchallenge: (session, method, extra) => autobahn.auth_cryptosign.sign_challenge(pair, extra),
  };
}

async function main() {
  await joins('ticket', 'joe', () => 'joe-ticket', 'frontend');
  await refused('ticket', 'joe', () => 'wrong-ticket');
  await refused('ticket', 'nobody', () => 'joe-ticket');
  say({ check: 'ticket' });

  await joins('wampcra', 'peter', cra('peter-secret'), 'backend');
  await joins('wampcra', 'salty', cra('salty-password'), 'backend');
  await refused('wampcra', 'peter', cra('not-it'));
  await refused('wampcra', 'nobody', cra('peter-secret'));
  say({ check: 'wampcra' });

  const alice = sign(SEED);
  await joins('cryptosign', 'alice', alice.onchallenge, 'backend', { pubkey: alice.pubkey });
  const mallory = sign(new Uint8Array(32));
  await refused('cryptosign', 'alice', mallory.onchallenge, { pubkey: alice.pubkey });
  await refused('cryptosign', 'alice', mallory.onchallenge, { pubkey: mallory.pubkey });
  say({ check: 'cryptosign' });
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('FAILED: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  },
);
