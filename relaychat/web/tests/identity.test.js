// Identity keys: raw (noble) and non-extractable WebCrypto, the same signatures either way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '../static/vendor/node_modules/@noble/curves/ed25519.js';
import { Identity, WebCryptoIdentity, makeIdentity, registrationMessage, verifyBinding, verifyStaticSig, webCryptoEd25519, checkStaticPublic, checkIdentityPublic, KeyFormatError } from '../static/identity.js';
import { powOk, solvePow } from '../static/pow.js';

test('WebCrypto Ed25519 is present in node and gives RFC 8032 signatures', async () => {
  assert.equal(await webCryptoEd25519(), true);
  assert.ok((await makeIdentity()) instanceof WebCryptoIdentity);
});

test('a WebCrypto identity certifies its static key, signs PROVE, and cannot be read out', async () => {
  const id = await WebCryptoIdentity.generate();
  assert.ok(verifyStaticSig(id.identityPublic, id.staticPublic, id.staticSig));
  assert.deepEqual(verifyBinding(id.binding(), id.staticPublic), id.identityPublic);
  const serverId = new Uint8Array(32).fill(1), challenge = new Uint8Array(32).fill(2);
  const sig = await id.signRegistration(serverId, challenge, 'alice');
  const m = registrationMessage(serverId, challenge, id.identityPublic, id.staticPublic, id.staticSig, 'alice');
  assert.ok(ed25519.verify(sig, m, id.identityPublic));
  const { privateKey } = id.record();
  assert.equal(privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey('pkcs8', privateKey));
  assert.equal(JSON.stringify(id), '{"identity":"WebCryptoIdentity"}');
  const again = WebCryptoIdentity.load(id.record());
  assert.deepEqual(again.binding(), id.binding());
  assert.throws(() => WebCryptoIdentity.load({ ...id.record(), staticSig: Identity.generate().staticSig }), KeyFormatError);
});

test('raw identity: deterministic signatures from a seed', async () => {
  const a = new Identity(new Uint8Array(32).fill(5), new Uint8Array(32).fill(6));
  const b = new Identity(new Uint8Array(32).fill(5), new Uint8Array(32).fill(6));
  assert.deepEqual(a.binding(), b.binding());
  const s = new Uint8Array(32);
  assert.deepEqual(await a.signRegistration(s, s, 'x1'), await b.signRegistration(s, s, 'x1'));
});

test('weak and non-canonical keys are refused', () => {
  const identityNeutral = new Uint8Array(32); identityNeutral[0] = 1; // the neutral point (small order)
  assert.throws(() => checkIdentityPublic(identityNeutral), /small-order/);
  assert.throws(() => checkStaticPublic(new Uint8Array(32)), /small-order/);
  assert.throws(() => checkStaticPublic(new Uint8Array(32).fill(0xff)), /canonical/);
});

test('proof of work meets the bits asked', () => {
  const c = new Uint8Array(32).fill(9);
  const nonce = solvePow(c, 10);
  assert.ok(powOk(c, nonce, 10));
  assert.throws(() => solvePow(c, 25), RangeError);
});
