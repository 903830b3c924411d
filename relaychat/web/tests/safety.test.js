// Safety numbers against libsignal's published version-1 vector (as tests/test_safety.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromHex, hex, utf8 } from '../static/bytes.js';
import { fingerprint, iteratedHash, numericFingerprint, safetyNumber } from '../static/safety.js';
import { Identity } from '../static/identity.js';

const ALICE = fromHex('0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868');
const BOB = fromHex('05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b');
const DISPLAY = '300354477692869396892869876765458257569162576843440918079131';

test("libsignal's display vector, from both sides", () => {
  assert.equal(numericFingerprint(ALICE, utf8('+14152222222'), BOB, utf8('+14153333333')), DISPLAY);
  assert.equal(numericFingerprint(BOB, utf8('+14153333333'), ALICE, utf8('+14152222222')), DISPLAY);
});

test("libsignal's scannable hashes (the iterated hash before digits)", () => {
  assert.equal(hex(iteratedHash(ALICE, utf8('+14152222222'))).slice(0, 64), '1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df');
  assert.equal(hex(iteratedHash(BOB, utf8('+14153333333'))).slice(0, 64), 'd62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d');
});

test('safety number: symmetric, 12 groups, canonical nicknames, key-dependent', () => {
  const a = Identity.generate().identityPublic, b = Identity.generate().identityPublic;
  const n = safetyNumber(a, 'Alice', b, 'bob');
  assert.match(n, /^\d{5}( \d{5}){11}$/);
  assert.equal(n, safetyNumber(b, 'bob', a, 'alice'));
  assert.notEqual(n, safetyNumber(a, 'alice', Identity.generate().identityPublic, 'bob'));
  assert.match(fingerprint(a), /^[0-9a-f]{4}( [0-9a-f]{4}){9}$/);
});
