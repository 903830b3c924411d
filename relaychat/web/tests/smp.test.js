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

test('simultaneous starts: the session initiator goes on, the responder answers (14.7)', () => {
  for (const [secretA, secretB, equal] of [['same', 'same', true], ['one', 'other', false]]) {
    const alice = new SocialistMillionaire(true), bob = new SocialistMillionaire(false);
    const a1 = alice.start(value(secretA)), b1 = bob.start(value(secretB));
    assert.equal(alice.receive(b1), null); // the initiator ignores the crossing SMP1
    assert.equal(alice.state, State.EXPECT2);
    const smp2 = bob.receive(a1); // the responder answers with its typed secret
    assert.equal(bob.state, State.EXPECT3);
    const smp4 = bob.receive(alice.receive(smp2));
    assert.equal(alice.receive(smp4), null);
    assert.equal(alice.outcome, equal);
    assert.equal(bob.outcome, equal);
  }
  // Without roles (null) a crossing SMP1 is OTR's unexpected message.
  const a = new SocialistMillionaire(), b = new SocialistMillionaire();
  const a1 = a.start(value('x'));
  b.start(value('x'));
  assert.throws(() => b.receive(a1), SMPError);
});

test('SmpRunner passes the session role on: a collision completes through the runner', () => {
  const ra = new SmpRunner(), rb = new SmpRunner();
  const [a1] = ra.start('s', value('k'), true).bodies;
  const [b1] = rb.start('s', value('k'), false).bodies;
  assert.deepEqual(ra.receive('s', b1, 'bob', true), { bodies: [], events: [] });
  const [smp2] = rb.receive('s', a1, 'alice', false).bodies;
  const [smp3] = ra.receive('s', smp2, 'bob', true).bodies;
  const r4 = rb.receive('s', smp3, 'alice', false);
  assert.equal(r4.events[0].equal, true);
  assert.equal(ra.receive('s', r4.bodies[0], 'bob', true).events[0].equal, true);
});
