// What the network can make the browser client keep is bounded, and no bound
// weakens trust: pins are refused (never dropped) at their bound, and seen-mail
// ids are dropped only behind a horizon that refuses what they guarded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, fixedPin, PinStatus } from '../static/channel.js';
import { ChatClient, MAIL_HORIZON, MAIL_SKEW, MAX_SEEN_MAIL, SeenMail } from '../static/client.js';
import { Identity } from '../static/identity.js';
import { seal } from '../static/mail.js';
import { KnownPeers, MAX_PINS_PER_RELAY, PinsFull } from '../static/pins.js';

const relay = new Uint8Array(32).fill(1), other = new Uint8Array(32).fill(2);
const key = (n) => new Uint8Array(32).fill(n);
const id = (n) => new Uint8Array(16).fill(n);
const NOW = 1_800_000_000;

test('at the pin bound a first contact is refused and every pin stays', () => {
  assert.ok(MAX_PINS_PER_RELAY >= 1000);
  const pins = new KnownPeers();
  pins.maxPerRelay = 2;
  pins.pin(relay, 'ann', key(1));
  pins.pin(relay, 'bea', key(2));
  assert.throws(() => pins.pin(relay, 'mallory', key(3)), PinsFull);
  assert.equal(pins.check(relay, 'mallory', key(3)), PinStatus.NEW);
  assert.equal(pins.check(relay, 'ann', key(9)), PinStatus.CHANGED);
  assert.equal(pins.pin(relay, 'bea', key(2)), PinStatus.MATCH);
  assert.equal(pins.pin(other, 'mallory', key(3)), PinStatus.NEW); // each relay has its own room
});

test('seen-mail ids are bounded, and what is forgotten is refused by the horizon', () => {
  assert.ok(MAX_SEEN_MAIL >= 1000);
  let saved = [];
  const seen = new SeenMail([], (r) => (saved = r));
  seen.limit = 3;
  for (let n = 1; n <= 5; n++) seen.add(id(n), NOW + n, NOW + 10);
  assert.equal(saved.filter((r) => r.id).length, 3);
  assert.equal(seen.horizon, NOW + 2);
  assert.ok(seen.tooOld(NOW + 1, NOW + 10) && seen.tooOld(NOW + 2, NOW + 10)); // forgotten ids: refused
  assert.ok(!seen.tooOld(NOW + 3, NOW + 10) && seen.has(id(3)));
  const again = new SeenMail(saved); // the horizon survives a reload
  assert.equal(again.horizon, NOW + 2);
  assert.ok(again.tooOld(NOW + 2, NOW + 10));
  assert.ok(seen.tooOld(NOW - MAIL_HORIZON - 1, NOW));
  assert.ok(seen.tooOld(NOW + MAIL_SKEW + 1, NOW)); // its id would never age out
});

function client(pins) {
  const events = [];
  const c = new ChatClient({ identity: Identity.generate(), knownPeers: pins, seenMail: new SeenMail(), smp: {},
    send: () => {}, onEvent: (e) => events.push(e), setTimer: () => 0, clearTimer: () => {}, now: () => NOW });
  Object.assign(c, { serverId: relay, canonical: 'alice', nick: 'alice', maxFrame: 32768, maxMail: 16384 });
  return { c, events };
}

test('a conversation whose first-contact pin is refused fails loudly and shows nothing', () => {
  const pins = new KnownPeers();
  pins.maxPerRelay = 0;
  const { c, events } = client(pins);
  const sid = '0123456789abcdef';
  const mine = c._channel(sid, 'bob', true);
  const peer = new Channel({ initiator: false, sid, localNick: 'bob', peerNick: 'alice', identity: Identity.generate(), pins: fixedPin() });
  peer.start();
  const [m2] = peer.receiveFrame(mine.start()[0]);
  c._handle(mine, mine.receiveFrame(m2.payload));
  assert.deepEqual(events.map((e) => e.type), ['failed']);
  assert.match(events[0].reason, /Cannot record bob's key: .*refused/);
  assert.deepEqual(pins.records(), []); // nothing pinned
});

test('a mail whose first-contact pin is refused is not shown and stays on the relay', () => {
  const pins = new KnownPeers();
  pins.maxPerRelay = 0;
  const { c, events } = client(pins);
  const acked = [];
  c.relay.ack = (mailId) => (acked.push(mailId), Promise.resolve());
  const bob = Identity.generate();
  const payload = seal(bob, 'bob', 'alice', c.identity.staticPublic, 'hello', NOW, 16384);
  c._mail({ mailId: 7, sender: 'bob', time: NOW, payload });
  assert.deepEqual(events.map((e) => e.type), ['mail-problem']);
  assert.match(events[0].reason, /not shown/);
  assert.deepEqual(acked, []);
});
