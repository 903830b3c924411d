// Two JS channels against each other; sealed mail both ways; hostile input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, ChannelState, fixedPin, REKEY_INTERVAL } from '../static/channel.js';
import { Identity } from '../static/identity.js';
import { openMail, seal, MailError, maxTextBytes } from '../static/mail.js';

function pair(pinOfB = null) {
  const a = Identity.generate(), b = Identity.generate();
  const ca = new Channel({ initiator: true, sid: '0123456789abcdef', localNick: 'alice', peerNick: 'bob', identity: a, pins: fixedPin(pinOfB) });
  const cb = new Channel({ initiator: false, sid: '0123456789abcdef', localNick: 'bob', peerNick: 'alice', identity: b, pins: fixedPin() });
  return { a, b, ca, cb };
}

function handshake(ca, cb) {
  cb.start();
  const [m1] = ca.start();
  const [m2] = cb.receiveFrame(m1);
  const r2 = ca.receiveFrame(m2.payload);
  const m3 = r2.find((e) => e.type === 'send');
  const open = cb.receiveFrame(m3.payload);
  return [r2.find((e) => e.type === 'open'), open.find((e) => e.type === 'open')];
}

test('handshake, same safety number, text both ways, rekey past 1000', () => {
  const { ca, cb } = pair();
  const [oa, ob] = handshake(ca, cb);
  assert.equal(oa.safetyNumber, ob.safetyNumber);
  assert.equal(ca.state, ChannelState.OPEN);
  for (let i = 0; i < REKEY_INTERVAL + 5; i++) {
    assert.deepEqual(cb.receiveFrame(ca.sendText(`m${i} \u00e9\n\u05d0`)), [{ type: 'message', text: `m${i} \u00e9\n\u05d0` }]);
  }
  assert.deepEqual(ca.receiveFrame(cb.sendText('back')), [{ type: 'message', text: 'back' }]);
  const bye = ca.close();
  assert.deepEqual(cb.receiveFrame(bye).map((e) => e.clean), [true]);
});

test('a replayed or altered frame fails the channel for good', () => {
  const { ca, cb } = pair();
  handshake(ca, cb);
  const f = ca.sendText('one');
  cb.receiveFrame(f);
  const [failed] = cb.receiveFrame(f);
  assert.equal(failed.type, 'failed');
  assert.match(failed.reason, /failed authentication/);
  assert.deepEqual(cb.receiveFrame(ca.sendText('two')), []);
});

test('a different pinned key stops the handshake loudly', () => {
  const { ca, cb } = pair(Identity.generate().identityPublic);
  cb.start();
  const [m2] = cb.receiveFrame(ca.start()[0]);
  const events = ca.receiveFrame(m2.payload);
  assert.equal(events.length, 1);
  assert.equal(events[0].error.kind, 'KeyChanged');
  assert.match(events[0].reason, /^WARNING: bob's identity key has CHANGED/);
});

test('sealed mail round trip; wrong sender name or tampering refused', () => {
  const a = Identity.generate(), b = Identity.generate();
  const sealed = seal(a, 'alice', 'bob', b.staticPublic, 'hello \u263a', 1700000000, 16384);
  const opened = openMail(b, 'alice', 'bob', sealed);
  assert.equal(opened.text, 'hello \u263a');
  assert.equal(opened.time, 1700000000);
  assert.deepEqual(opened.identityPub, a.identityPublic);
  assert.throws(() => openMail(b, 'mallory', 'bob', sealed), MailError);
  const bad = sealed.slice();
  bad[100] ^= 1;
  assert.throws(() => openMail(b, 'alice', 'bob', bad), MailError);
  assert.throws(() => seal(a, 'alice', 'bob', b.staticPublic, 'x'.repeat(maxTextBytes(16384) + 1), 1, 16384), MailError);
});
