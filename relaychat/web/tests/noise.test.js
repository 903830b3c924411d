// The JS Noise machine against the same cacophony vectors as tests/test_noise.py.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fromHex, hex } from '../static/bytes.js';
import { HandshakeState, CipherState, DecryptError, PATTERNS, HandshakeStateError } from '../static/noise.js';

const local = JSON.parse(readFileSync(new URL('../../../tests/data/noise_vectors.json', import.meta.url)));
const SUITE = '25519_ChaChaPoly_SHA256';
const key = (v) => (v === undefined || v === null ? null : fromHex(v));

function runVector(vector) {
  const name = vector.protocol_name;
  const init = new HandshakeState(name, true, fromHex(vector.init_prologue), {
    s: key(vector.init_static), e: key(vector.init_ephemeral), rs: key(vector.init_remote_static),
  });
  const resp = new HandshakeState(name, false, fromHex(vector.resp_prologue), {
    s: key(vector.resp_static), e: key(vector.resp_ephemeral), rs: key(vector.resp_remote_static),
  });
  const oneWay = PATTERNS[name.split('_')[1]].messages.length === 1;
  vector.messages.forEach((message, i) => {
    const payload = fromHex(message.payload);
    const fromInit = oneWay || i % 2 === 0;
    const [sender, receiver] = fromInit ? [init, resp] : [resp, init];
    if (!sender.complete) {
      assert.equal(hex(sender.writeMessage(payload)), message.ciphertext, `${name} message ${i}`);
      assert.equal(hex(receiver.readMessage(fromHex(message.ciphertext))), message.payload);
      if (init.complete) for (const side of [init, resp]) assert.equal(hex(side.handshakeHash), vector.handshake_hash);
    } else {
      const [send] = sender.cipherStates;
      const [, recv] = receiver.cipherStates;
      assert.equal(hex(send.encryptWithAd(new Uint8Array(0), payload)), message.ciphertext, `${name} transport ${i}`);
      assert.equal(hex(recv.decryptWithAd(new Uint8Array(0), fromHex(message.ciphertext))), message.payload);
    }
  });
  assert.ok(init.complete && resp.complete);
}

test('every supported pattern has a vector in the local copy', () => {
  const covered = new Set(local.vectors.map((v) => v.protocol_name.split('_')[1]));
  assert.deepEqual([...covered].sort(), Object.keys(PATTERNS).sort());
});

for (const vector of local.vectors) {
  test(`cacophony ${vector.protocol_name}`, () => runVector(vector));
}

test('the shared cacophony file: every vector of our suite and patterns passes', { skip: !readable('/work/shared/vectors/cacophony.json') }, () => {
  const shared = JSON.parse(readFileSync('/work/shared/vectors/cacophony.json')).vectors;
  const ours = shared.filter((v) => {
    const [prefix, pattern, ...suite] = v.protocol_name.split('_');
    return prefix === 'Noise' && pattern in PATTERNS && suite.join('_') === SUITE;
  });
  assert.ok(ours.length >= Object.keys(PATTERNS).length);
  ours.forEach(runVector);
});

function readable(path) {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}

test('tampering, replay and order are refused', () => {
  const s1 = new Uint8Array(32).fill(1), s2 = new Uint8Array(32).fill(2);
  const name = 'Noise_XX_25519_ChaChaPoly_SHA256';
  const i = new HandshakeState(name, true, new Uint8Array([1]), { s: s1 });
  const r = new HandshakeState(name, false, new Uint8Array([1]), { s: s2 });
  assert.throws(() => r.writeMessage(), HandshakeStateError);
  r.readMessage(i.writeMessage());
  const m2 = r.writeMessage(new Uint8Array([7]));
  const bad = m2.slice();
  bad[40] ^= 1;
  assert.throws(() => i.readMessage(bad), DecryptError);
  assert.throws(() => i.readMessage(m2), HandshakeStateError); // failed: abandoned
});

test('rekey is the default REKEY and keeps the nonce', () => {
  const a = new CipherState(new Uint8Array(32).fill(9));
  const b = new CipherState(new Uint8Array(32).fill(9));
  a.encryptWithAd(new Uint8Array(0), new Uint8Array(1));
  b.decryptWithAd(new Uint8Array(0), new CipherState(new Uint8Array(32).fill(9)).encryptWithAd(new Uint8Array(0), new Uint8Array(1)));
  a.rekey();
  b.rekey();
  assert.equal(a.nonce, 1n);
  const c = a.encryptWithAd(new Uint8Array(0), new Uint8Array([5]));
  assert.deepEqual(b.decryptWithAd(new Uint8Array(0), c), new Uint8Array([5]));
  assert.throws(() => b.decryptWithAd(new Uint8Array(0), c), DecryptError);
});
