// The relay id remembered per address (section 13): a relay that changes its id
// at a known address is refused before anything is registered or keyed by it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64encode } from '../static/bytes.js';
import { PinStatus } from '../static/channel.js';
import { ChatClient, SeenMail } from '../static/client.js';
import { Identity } from '../static/identity.js';
import { KnownRelays, MAX_RELAYS, RelayChanged, RelaysFull, relayAddress } from '../static/knownrelays.js';
import { KnownPeers } from '../static/pins.js';
import { fingerprint } from '../static/safety.js';

const A = new Uint8Array(32).fill(1);
const B = new Uint8Array(32).fill(2);

test('the first id is remembered and saved; the same id passes', () => {
  const saved = [];
  const relays = new KnownRelays([], (r) => saved.push(r));
  assert.equal(relays.admit('relay.example:443', A), PinStatus.NEW);
  assert.deepEqual(saved.at(-1), [{ address: 'relay.example:443', id: b64encode(A) }]);
  assert.equal(new KnownRelays(saved.at(-1)).admit('relay.example:443', A), PinStatus.MATCH); // after a reload
  assert.equal(saved.length, 1);
});

test('another id at a known address is a stop, until the user accepts it', () => {
  const relays = new KnownRelays([{ address: 'relay.example:443', id: b64encode(A) }]);
  assert.throws(() => relays.admit('relay.example:443', B), (e) => e instanceof RelayChanged && e.code === 'relay-changed'
    && e.message.includes(fingerprint(A)) && e.message.includes(fingerprint(B)));
  assert.equal(relays.check('relay.example:443', A), PinStatus.MATCH); // the remembered id is kept
  relays.replace('relay.example:443', B);
  assert.equal(relays.admit('relay.example:443', B), PinStatus.MATCH);
  assert.equal(relays.admit('other.example:443', A), PinStatus.NEW); // ids are per address
});

test('an unreadable record is disputed, not unknown, and stays so when the list is saved again', () => {
  const saved = [];
  const relays = new KnownRelays([{ address: 'relay.example:443', id: 'not base64!' }], (r) => saved.push(r));
  assert.equal(relays.check('relay.example:443', A), PinStatus.CHANGED);
  assert.throws(() => relays.admit('relay.example:443', A), RelayChanged);
  relays.admit('other.example:443', B); // saves the whole list
  const reloaded = new KnownRelays(saved.at(-1));
  assert.equal(reloaded.check('relay.example:443', A), PinStatus.CHANGED);
  reloaded.replace('relay.example:443', A); // the person accepted an id: the record is readable again
  assert.equal(reloaded.check('relay.example:443', A), PinStatus.MATCH);
});

test('bounded: past MAX_RELAYS a new address is refused and none is forgotten', () => {
  const records = Array.from({ length: MAX_RELAYS }, (_, i) => ({ address: `r${i}.example:443`, id: b64encode(A) }));
  const relays = new KnownRelays(records);
  assert.throws(() => relays.admit('new.example:443', A), RelaysFull);
  assert.equal(relays.records().length, MAX_RELAYS);
  assert.equal(relays.admit('r7.example:443', A), PinStatus.MATCH);
});

test('addresses: host:port of the WebSocket URL, default ports, host case folded', () => {
  assert.equal(relayAddress('wss://Relay.Example/ws'), 'relay.example:443');
  assert.equal(relayAddress('ws://relay.example/'), 'relay.example:80');
  assert.equal(relayAddress('wss://relay.example:8443/x?y'), 'relay.example:8443');
  assert.equal(relayAddress('ws://[::1]:7734/'), '[::1]:7734');
});

test('sign-in: a changed relay id stops before REGISTER', async () => {
  const lines = [];
  const knownRelays = new KnownRelays([{ address: 'relay.example:443', id: b64encode(A) }]);
  const client = new ChatClient({
    identity: Identity.generate(), knownPeers: new KnownPeers(), seenMail: new SeenMail(), smp: {},
    send: (l) => lines.push(l), onEvent: () => {}, knownRelays, relayAddress: 'relay.example:443',
  });
  const signingIn = client.login('alice', () => null);
  assert.deepEqual(lines, ['HELLO 1']);
  client.relay.receiveLine(`OK HELLO 1 ${b64encode(B)} max_line=65536 max_frame=32768 max_mail=16384`);
  await assert.rejects(signingIn, RelayChanged);
  assert.deepEqual(lines, ['HELLO 1']); // nothing registered
  assert.equal(client.serverId, null); // and nothing keyed by the new id
});

test('sign-in: a first relay is remembered, then registration goes on', async () => {
  const lines = [];
  const knownRelays = new KnownRelays();
  const client = new ChatClient({
    identity: Identity.generate(), knownPeers: new KnownPeers(), seenMail: new SeenMail(), smp: {},
    send: (l) => lines.push(l), onEvent: () => {}, knownRelays, relayAddress: 'relay.example:443',
  });
  client.login('alice', () => null).catch(() => null);
  client.relay.receiveLine(`OK HELLO 1 ${b64encode(A)} max_line=65536 max_frame=32768 max_mail=16384`);
  await new Promise((r) => setImmediate(r));
  assert.equal(knownRelays.check('relay.example:443', A), PinStatus.MATCH);
  assert.ok(lines[1].startsWith('REGISTER alice '));
});

test('accepting a new relay id carries the pins over: a relay claiming a rebuild gains nothing', () => {
  const pins = new KnownPeers();
  const bob = Identity.generate().identityPublic;
  const carol = Identity.generate().identityPublic;
  const other = Identity.generate().identityPublic;
  pins.pin(A, 'bob', bob);
  pins.markVerified(A, 'bob', bob);
  pins.pin(A, 'carol', carol);
  pins.pin(B, 'carol', other); // pinned under the new id already: it stands
  assert.equal(pins.carryOver(A, B), 1);
  assert.equal(pins.check(B, 'bob', bob), PinStatus.MATCH);
  assert.equal(pins.verified(B, 'bob', bob), true);
  assert.equal(pins.check(B, 'bob', other), PinStatus.CHANGED); // an impostor under the new id is a key change
  assert.equal(pins.check(B, 'carol', other), PinStatus.MATCH);
  assert.equal(pins.check(A, 'bob', bob), PinStatus.MATCH); // the old id's pins stay
});
