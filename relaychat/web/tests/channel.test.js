// Two JS channels against each other; sealed mail both ways; hostile input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, ChannelState, MessageType, fixedPin, maxTextBytes as maxChannelText, REKEY_INTERVAL } from '../static/channel.js';
import { Identity } from '../static/identity.js';
import { Unconfirmed, decodeReceipt, encodeReceipt, firstWords } from '../static/receipts.js';
import { openMail, seal, sealReceipt, MailError, maxTextBytes } from '../static/mail.js';
import { MAX_AGE, ReceiptOutbox, SentMail } from '../static/mailreceipts.js';

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
    const [shown, receipt] = cb.receiveFrame(ca.sendText(`m${i} \u00e9\n\u05d0`));
    assert.deepEqual(shown, { type: 'message', text: `m${i} \u00e9\n\u05d0` });
    assert.deepEqual(ca.receiveFrame(receipt.payload), [{ type: 'delivered', messages: [{ number: i + 1, words: `m${i} \u00e9 \u05d0` }] }]);
  }
  const [back, backReceipt] = ca.receiveFrame(cb.sendText('back'));
  assert.deepEqual(back, { type: 'message', text: 'back' });
  assert.equal(cb.receiveFrame(backReceipt.payload)[0].type, 'delivered');
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

test('receipts: one RECEIPT confirms every TEXT up to it; an impossible one fails the channel', () => {
  const { ca, cb } = pair();
  handshake(ca, cb);
  const frames = ['first words of a rather long message that goes on and on', 'two', 'three'].map((t) => ca.sendText(t));
  assert.equal(ca.lastTextNumber, 3);
  const receipts = frames.map((f) => cb.receiveFrame(f)[1].payload);
  assert.deepEqual(ca.unconfirmed.map(([n]) => n), [1, 2, 3]);
  assert.equal(ca.unconfirmed[0][1], 'first words of a rather long message\u2026');
  const [delivered] = ca.receiveFrame(receipts[0]);
  assert.deepEqual(delivered.messages.map((m) => m.number), [1]);
  assert.deepEqual(ca.receiveFrame(receipts[1])[0].messages.map((m) => m.words), ['two']);
  assert.equal(ca.unconfirmedCount, 1);
  // A receipt beyond what was sent (forged by the peer's client) is a failure.
  const bogus = cb._encrypt(4, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 99]));
  assert.deepEqual(ca.receiveFrame(receipts[2])[0].messages.map((m) => m.number), [3]);
  const [failed] = ca.receiveFrame(bogus);
  assert.equal(failed.type, 'failed');
  assert.match(failed.reason, /receipt for messages it cannot have received/);
});

test('one receipt naming the last TEXT confirms all before it; the record is bounded', () => {
  const u = new Unconfirmed(2);
  u.sent(1, 'a'); u.sent(3, 'b'); u.sent(4, 'c'); // 2 was not a TEXT; 'a' is past the bound
  assert.equal(u.size, 3);
  assert.deepEqual(u.items, [[3, 'b'], [4, 'c']]);
  assert.equal(u.confirm(5, 4), null); // beyond what was sent
  assert.deepEqual(u.confirm(4, 4), [[3, 'b'], [4, 'c']]);
  assert.equal(u.size, 0);
  assert.equal(u.confirm(4, 4), null); // not after the last one
  assert.equal(decodeReceipt(encodeReceipt(2 ** 40 + 7)), 2 ** 40 + 7);
  assert.equal(decodeReceipt(new Uint8Array(9)), 0);
  assert.equal(firstWords('  x  '.repeat(3)), 'x x x');
  assert.equal(firstWords('y'.repeat(50)), 'y'.repeat(40) + '\u2026');
});

test('a malformed or repeated receipt, and receipts are never answered', () => {
  for (const body of [new Uint8Array(7), new Uint8Array(8)]) {
    const { ca, cb } = pair();
    handshake(ca, cb);
    ca.sendText('hi');
    const events = ca.receiveFrame(cb._encrypt(4, body));
    assert.equal(events[0].type, 'failed');
  }
  const { ca, cb } = pair();
  handshake(ca, cb);
  const receipt = cb.receiveFrame(ca.sendText('hi'))[1].payload;
  const sentBefore = ca.messagesSent;
  assert.equal(ca.receiveFrame(receipt)[0].type, 'delivered');
  assert.equal(ca.messagesSent, sentBefore); // no answer to a receipt
});

test('closing with receipts: CLOSING reads the receipts, shows nothing else, then ends', () => {
  const { ca, cb } = pair();
  handshake(ca, cb);
  const t1 = ca.sendText('one'), t2 = ca.sendText('two');
  const r1 = cb.receiveFrame(t1)[1].payload;
  const crossing = cb.sendText('crossing');
  const r2 = cb.receiveFrame(t2)[1].payload;
  ca.close();
  assert.equal(ca.state, ChannelState.CLOSING);
  assert.deepEqual(ca.receiveFrame(r1)[0].messages.map((m) => m.words), ['one']);
  assert.deepEqual(ca.receiveFrame(crossing), []); // not shown after our goodbye
  assert.deepEqual(ca.receiveFrame(r2)[0].messages.map((m) => m.words), ['two']);
  assert.equal(ca.state, ChannelState.ENDED);
  assert.deepEqual(ca.unconfirmed, []);
});

test('an unclean end leaves the unconfirmed messages named by their first words', () => {
  const { ca, cb } = pair();
  handshake(ca, cb);
  ca.receiveFrame(cb.receiveFrame(ca.sendText('arrived'))[1].payload);
  ca.sendText('lost   in\ttransit');
  const [closed] = ca.relayClosed('gone');
  assert.equal(closed.clean, false);
  assert.deepEqual(ca.unconfirmed, [[2, 'lost in transit']]);
  assert.equal(ca.unconfirmedCount, 1);
});

test('sealed read receipts: the control body opens as receiptFor, plain mail has none', () => {
  const a = Identity.generate(), b = Identity.generate();
  const openedId = new Uint8Array(16).fill(7);
  const receipt = sealReceipt(b, 'bob', 'alice', a.staticPublic, openedId, 1700000002);
  const opened = openMail(a, 'bob', 'alice', receipt);
  assert.deepEqual(opened.receiptFor, openedId);
  assert.equal(opened.text, '');
  assert.equal(openMail(a, 'bob', 'alice', seal(b, 'bob', 'alice', a.staticPublic, 'plain', 1, 16384)).receiptFor, null);
  assert.throws(() => sealReceipt(b, 'bob', 'alice', a.staticPublic, new Uint8Array(15), 1), RangeError);
});

test('SentMail accepts a receipt only for our mail to that recipient on that relay; the outbox keeps what is owed', () => {
  const relay = new Uint8Array(32).fill(1), other = new Uint8Array(32).fill(2), id = new Uint8Array(16).fill(3);
  const saved = [];
  const sent = new SentMail([], (r) => saved.push(r));
  sent.add(id, relay, 'Bob', 'see you at five', 1000);
  assert.equal(sent.take(id, relay, 'carol', 1001), null);
  assert.equal(sent.take(id, other, 'bob', 1001), null);
  assert.equal(sent.take(new Uint8Array(16), relay, 'bob', 1001), null);
  assert.equal(sent.take(id, relay, 'bob', 1001).words, 'see you at five');
  assert.equal(sent.take(id, relay, 'bob', 1002), null); // once only
  assert.deepEqual(saved.at(-1), []);
  // bounded by age: a record older than MAX_AGE goes at the next change
  const aged = new SentMail([{ id: '00'.repeat(16), relay: 'x', nick: 'bob', time: 0, words: 'old' }]);
  aged.add(id, relay, 'bob', 'new', MAX_AGE + 10);
  assert.deepEqual(aged.records().map((r) => r.words), ['new']);
  const outbox = new ReceiptOutbox();
  const owed = outbox.add(relay, 'Bob', id, 5);
  outbox.add(relay, 'bob', id, 6); // the same receipt once
  assert.equal(outbox.pending(relay).length, 1);
  assert.equal(outbox.pending(other).length, 0);
  outbox.done(owed, 7);
  assert.deepEqual(outbox.pending(relay), []);
});

test('a long text goes as TEXT_PARTs and a final TEXT, joined whole, confirmed once; nothing else may come between', () => {
  const { ca, cb } = pair();
  handshake(ca, cb);
  const text = '\u00e9'.repeat(maxChannelText() + 7) + ' end'; // a two-byte character cut across pieces
  const frames = ca.sendTextFrames(text);
  assert.equal(frames.length, 3);
  assert.deepEqual(cb.receiveFrame(frames[0]), []);
  assert.deepEqual(cb.receiveFrame(frames[1]), []);
  const [shown, receipt] = cb.receiveFrame(frames[2]);
  assert.deepEqual(shown, { type: 'message', text });
  assert.equal(ca.receiveFrame(receipt.payload)[0].messages[0].number, 3);
  assert.deepEqual(cb.receiveFrame(ca._encrypt(MessageType.TEXT_PART, new Uint8Array(10))), []);
  const [failed] = cb.receiveFrame(ca.sendSmp(new Uint8Array([1])));
  assert.equal(failed.type, 'failed');
  assert.match(failed.reason, /inside a long one/);
  assert.equal(MessageType.TEXT_PART, 5);
});
