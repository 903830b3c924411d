// Proof of work for PROVE (docs/protocol.rst section 5), as identity.py's
// pow_ok/solve_pow. Only @noble/hashes (relative imports), so it loads in a
// Web Worker, where import maps do not apply.
import { sha256 } from './vendor/node_modules/@noble/hashes/sha2.js';
import { concat, toBigInt, utf8 } from './bytes.js';

export const POW_CONTEXT = utf8('relaychat pow v1\x00');
export const MAX_POW_BITS = 24; // 2**24 hashes: the most a relay may ask and a client will do

export function powOk(challenge, nonce, bits) {
  if (bits === 0) return nonce.length <= 32;
  if (nonce.length < 1 || nonce.length > 32) return false;
  const digest = toBigInt(sha256(concat(POW_CONTEXT, challenge, nonce)));
  return digest >> BigInt(256 - bits) === 0n;
}

/** An 8-byte big-endian counter nonce meeting `bits` (as solve_pow); empty for 0 bits. */
export function solvePow(challenge, bits) {
  if (!Number.isInteger(bits) || bits < 0 || bits > MAX_POW_BITS) throw new RangeError(`pow_bits must be 0..${MAX_POW_BITS}`);
  if (bits === 0) return new Uint8Array(0);
  const base = sha256.create().update(POW_CONTEXT).update(challenge);
  const nonce = new Uint8Array(8);
  const view = new DataView(nonce.buffer);
  const full = bits >> 3, rest = bits & 7;
  for (let counter = 0; ; counter++) {
    view.setUint32(0, Math.floor(counter / 2 ** 32));
    view.setUint32(4, counter >>> 0);
    const d = base.clone().update(nonce).digest();
    let ok = true;
    for (let i = 0; i < full && ok; i++) ok = d[i] === 0;
    if (ok && rest) ok = d[full] >> (8 - rest) === 0;
    if (ok) return nonce;
  }
}
