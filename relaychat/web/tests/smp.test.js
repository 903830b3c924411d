// SMP round trips, failures and the strict decoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmpRunner } from '../static/smprun.js';
import { SocialistMillionaire, SMPError, State, decodeMessage, encodeMessage, Kind, normalizeUserSecret, smpSecret, SMPUsageError } from '../static/smp.js';

const fp = (n) => new Uint8Array(32).fill(n);
const value = (text) => smpSecret(fp(1), fp(2), fp(3), text);

function run(secretA, secretB) {
  const alice = new SocialistMillionaire(), bob = new SocialistMillionaire();
  assert.equal(bob.receive(alice.start(value(secretA))), null);
  assert.equal(bob.state, State.AWAITING_SECRET);
  const smp3 = alice.receive(bob.respond(value(secretB)));
  const smp4 = bob.receive(smp3);
  assert.equal(alice.receive(smp4), null);
  assert.equal(alice.outcome, bob.outcome);
  assert.equal(alice.state, State.EXPECT1);
  return alice.outcome;
}

test('same secret: equal; different: not equal; normalisation folds variants', () => {
  assert.equal(run('blue whale', 'blue whale'), true);
  assert.equal(run('blue whale', 'blue whales'), false);
  assert.equal(run('caf\u00e9 ', 'cafe\u0301'), true);
  assert.equal(normalizeUserSecret('\u3000\uff21b\x1c'), 'Ab');
  assert.throws(() => value('  '));
});

test('a tampered message is a failed check that resets the machine', () => {
  const alice = new SocialistMillionaire(), bob = new SocialistMillionaire();
  const smp1 = alice.start(value('x'));
  const bad = smp1.slice();
  bad[bad.length - 1] ^= 1;
  assert.throws(() => bob.receive(bad), SMPError);
  assert.equal(bob.state, State.EXPECT1);
  assert.throws(() => bob.respond(value('x')), SMPUsageError);
});

test('the strict decoder refuses every other spelling', () => {
  assert.deepEqual(decodeMessage(new Uint8Array([5])), [Kind.ABORT, []]);
  assert.throws(() => decodeMessage(new Uint8Array([])), SMPError);
  assert.throws(() => decodeMessage(new Uint8Array([6])), SMPError);
  assert.throws(() => decodeMessage(new Uint8Array([5, 0])), SMPError);
  const smp4 = encodeMessage(Kind.SMP4, [0x0102n, 0n, 3n]);
  assert.deepEqual(Array.from(smp4), [4, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3]); // protocol.rst 14.4 example
  assert.throws(() => decodeMessage(new Uint8Array([4, 0, 0, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3])), /leading zero/);
});

test('out-of-range and non-subgroup elements are refused', () => {
  const bob = new SocialistMillionaire();
  assert.throws(() => bob.receive(encodeMessage(Kind.SMP1, [1n, 1n, 1n, 4n, 1n, 1n])), /range 2..p-2/);
});

test('the runner gives the sentences of section 14.2', () => {
  const a = new SmpRunner(), b = new SmpRunner();
  let out = a.start('s', value('one'));
  out = b.receive('s', out.bodies[0], 'alice');
  assert.deepEqual(out.events, [{ type: 'smp-requested' }]);
  out = b.respond('s', value('two'));
  out = a.receive('s', out.bodies[0], 'bob');
  const last = b.receive('s', out.bodies[0], 'alice');
  assert.equal(last.events[0].equal, false);
  assert.match(last.events[0].reason, /The secrets differ/);
  out = a.receive('s', last.bodies[0], 'bob');
  assert.equal(out.events[0].type, 'smp-result');
  assert.equal(out.events[0].equal, false);
});

test('normalisation keeps what Python keeps: the BOM is not white space', () => {
  assert.equal(normalizeUserSecret('\ufeffa'), '\ufeffa'); // String.prototype.trim() would strip it
  assert.equal(normalizeUserSecret('\x1fa\x1c'), 'a'); // Python strips U+001C..U+001F, trim() does not
});
