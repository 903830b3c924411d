// Bytes, text and the strict encodings of docs/protocol.rst section 1.
// Plain functions, no DOM: shared by every protocol module and by node tests.

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class EncodingError extends Error {}

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as Python's "surrogatepass" would refuse). */
export function utf8(text) {
  return ENCODER.encode(text);
}

/** Strict UTF-8 decoding: throws EncodingError on any invalid sequence (Python: errors="strict"). */
export function fromUtf8(bytes) {
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new EncodingError('not UTF-8');
  }
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Two-byte big-endian length prefix (prologues, signed data). */
export function lp(bytes) {
  if (bytes.length > 0xffff) throw new RangeError('field longer than 65535 bytes');
  return concat(new Uint8Array([bytes.length >> 8, bytes.length & 0xff]), bytes);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(text) {
  if (text.length % 2 || /[^0-9a-fA-F]/.test(text)) throw new EncodingError('not hex');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Constant-time equality of two byte strings (length is not secret). */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const VALUES = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

export function b64encode(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const left = bytes.length - i;
  if (left === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + '==';
  } else if (left === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + '=';
  }
  return out;
}

export function encodedLength(size) {
  return 4 * Math.ceil(size / 3);
}

/**
 * RFC 4648 base64 with padding, rejecting every other spelling (section 1):
 * other characters, missing or extra padding, non-zero unused bits.
 * `size` demands an exact length; `maxSize` bounds it before any work.
 */
export function b64decode(text, { size, maxSize } = {}) {
  if (typeof text !== 'string') throw new EncodingError('not base64');
  if (maxSize !== undefined && text.length > encodedLength(maxSize)) throw new EncodingError('field too long');
  if (text.length % 4) throw new EncodingError('not base64');
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      const last = i + 4 === text.length;
      if (c === 61 && last && j >= 4 - pad) {
        n <<= 6;
        continue;
      }
      const v = c < 128 ? VALUES[c] : -1;
      if (v < 0) throw new EncodingError('not base64');
      n = (n << 6) | v;
    }
    out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  if (b64encode(out) !== text) throw new EncodingError('not canonical base64');
  if (size !== undefined && out.length !== size) throw new EncodingError(`expected ${size} bytes, got ${out.length}`);
  return out;
}

/** Big-endian unsigned integer <-> bytes, for BigInt arithmetic. */
export function toBigInt(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

export function fromBigInt(n, length) {
  if (length === undefined) {
    length = 0;
    for (let m = n; m > 0n; m >>= 8n) length++;
  }
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--, n >>= 8n) out[i] = Number(n & 255n);
  if (n !== 0n) throw new RangeError('integer does not fit');
  return out;
}
