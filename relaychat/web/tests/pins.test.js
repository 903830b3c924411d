// Pins and verification records: a verification belongs to relay, nickname and key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { How, KnownPeers } from '../static/pins.js';
import { PinStatus } from '../static/channel.js';

const relay = new Uint8Array(32).fill(1), other = new Uint8Array(32).fill(2);
const k1 = new Uint8Array(32).fill(3), k2 = new Uint8Array(32).fill(4);

test('a verification holds only for the key, nickname and relay it was made for', () => {
  let saved = [];
  const pins = new KnownPeers([], (r) => (saved = r));
  assert.equal(pins.pin(relay, 'Bob', k1), PinStatus.NEW);
  assert.equal(pins.markVerified(relay, 'bob', k2, How.SMP, 10), false); // not the pinned key
  assert.equal(pins.markVerified(relay, 'bob', k1, How.SMP, 10), true);
  assert.deepEqual(pins.verification(relay, 'bob', k1), { how: 'smp', time: 10 });
  assert.equal(pins.verified(relay, 'bob', k2), false);
  assert.equal(pins.verified(other, 'bob', k1), false);
  // it survives a restart, bound to its key
  const again = new KnownPeers(saved);
  assert.equal(again.verified(relay, 'bob', k1), true);
  // a record whose verification names another key (or an older boolean one) reads as not verified
  assert.equal(new KnownPeers([{ ...saved[0], verified: { how: 'smp', time: 1, key: k2 } }]).verified(relay, 'bob', k1), false);
  assert.equal(new KnownPeers([{ ...saved[0], verified: true }]).verified(relay, 'bob', k1), false);
});

test('accepting a changed key clears the verification, and the old key never reads verified again', () => {
  const pins = new KnownPeers();
  pins.pin(relay, 'bob', k1);
  pins.markVerified(relay, 'bob', k1, How.SAFETY_NUMBER, 5);
  assert.equal(pins.check(relay, 'bob', k2), PinStatus.CHANGED);
  assert.equal(pins.pin(relay, 'bob', k2), PinStatus.CHANGED); // never over a different key
  assert.equal(pins.verified(relay, 'bob', k1), true);
  pins.replace(relay, 'bob', k2);
  assert.equal(pins.verified(relay, 'bob', k2), false);
  assert.equal(pins.verified(relay, 'bob', k1), false);
  assert.equal(pins.verification(relay, 'bob', k1), null);
  assert.deepEqual(pins.records()[0].verified, null);
});
