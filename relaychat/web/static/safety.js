// Fingerprints and safety numbers (docs/protocol.rst section 13), as
// relaychat/crypto/safety.py: libsignal's version-1 numeric fingerprint
// over the raw identity keys and canonical nicknames.
import { sha256, sha512 } from './vendor/node_modules/@noble/hashes/sha2.js';
import { concat, hex, utf8 } from './bytes.js';

export const ITERATIONS = 5200;
const VERSION = new Uint8Array([0, 0]);

export function fingerprint(identityPub) {
  if (!(identityPub instanceof Uint8Array) || identityPub.length !== 32) throw new Error('An identity key is 32 bytes.');
  const digest = hex(sha256(identityPub)).slice(0, 40);
  return digest.match(/.{4}/g).join(' ');
}

export function iteratedHash(key, stableId, iterations = ITERATIONS) {
  let h = concat(VERSION, key, stableId);
  for (let i = 0; i < iterations; i++) h = sha512(concat(h, key));
  return h;
}

export function numericHalf(key, stableId, iterations = ITERATIONS) {
  const h = iteratedHash(key, stableId, iterations);
  let out = '';
  for (let i = 0; i < 30; i += 5) {
    let n = 0;
    for (let j = 0; j < 5; j++) n = n * 256 + h[i + j]; // < 2^40: exact in a double
    out += String(n % 100000).padStart(5, '0');
  }
  return out;
}

export function numericFingerprint(localKey, localId, remoteKey, remoteId, iterations = ITERATIONS) {
  const a = numericHalf(localKey, localId, iterations);
  const b = numericHalf(remoteKey, remoteId, iterations);
  return a < b ? a + b : b + a;
}

export function formatSafetyNumber(digits) {
  if (!/^[0-9]{60}$/.test(digits)) throw new Error('A safety number is 60 decimal digits.');
  return digits.match(/.{5}/g).join(' ');
}

const cache = new Map();

/** "12345 67890 ..." (12 groups); the same string on both sides. */
export function safetyNumber(localPub, localNick, remotePub, remoteNick) {
  const k = hex(localPub) + localNick.toLowerCase() + '|' + hex(remotePub) + remoteNick.toLowerCase();
  let number = cache.get(k);
  if (number === undefined) {
    number = formatSafetyNumber(numericFingerprint(localPub, utf8(localNick.toLowerCase()), remotePub, utf8(remoteNick.toLowerCase())));
    if (cache.size > 1024) cache.clear();
    cache.set(k, number);
  }
  return number;
}
