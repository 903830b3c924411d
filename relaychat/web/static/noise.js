// The Noise Protocol Framework, revision 34, as a sans-IO state machine:
// the same object model (spec section 5) and the same patterns as
// relaychat/crypto/noise.py, checked against the same cacophony vectors.
// Only 25519_ChaChaPoly_SHA256; primitives from @noble/* (vendored).
import { chacha20poly1305 } from './vendor/node_modules/@noble/ciphers/chacha.js';
import { x25519 } from './vendor/node_modules/@noble/curves/ed25519.js';
import { hmac } from './vendor/node_modules/@noble/hashes/hmac.js';
import { sha256 } from './vendor/node_modules/@noble/hashes/sha2.js';
import { concat, utf8 } from './bytes.js';

export const MAX_MESSAGE_LEN = 65535;
export const MAX_NONCE = 2n ** 64n - 1n;
const DHLEN = 32;
const HASHLEN = 32;
const TAGLEN = 16;

export class NoiseError extends Error {}
/** AEAD authentication failed: altered, replayed, reordered, truncated or wrong keys/prologue. */
export class DecryptError extends NoiseError {}
/** The API was used out of order or with keys the pattern does not fit. */
export class HandshakeStateError extends NoiseError {}

function dh(privateKey, publicKey) {
  try {
    return x25519.getSharedSecret(privateKey, publicKey);
  } catch {
    throw new NoiseError('DH failed: invalid or low-order public key');
  }
}

export function generateKeypair() {
  const privateKey = x25519.utils.randomSecretKey();
  return privateKey;
}

export function publicKey(privateKey) {
  return x25519.getPublicKey(privateKey);
}

function nonce(n) {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, n, true); // 12.3: 4 zero bytes, little-endian n
  return out;
}

const hash = (data) => sha256(data);
const mac = (key, data) => hmac(sha256, key, data);

/** HKDF exactly as written in spec 4.3 (2 or 3 outputs). */
function hkdf(chainingKey, ikm, outputs) {
  const tempKey = mac(chainingKey, ikm);
  const out1 = mac(tempKey, new Uint8Array([1]));
  const out2 = mac(tempKey, concat(out1, new Uint8Array([2])));
  if (outputs === 2) return [out1, out2];
  return [out1, out2, mac(tempKey, concat(out2, new Uint8Array([3])))];
}

// Section 7, in the spec's own notation (the same table as noise.py).
const PATTERN_TEXT = `
N:
  <- s
  ...
  -> e, es

X:
  <- s
  ...
  -> e, es, s, ss

NK:
  <- s
  ...
  -> e, es
  <- e, ee

KK:
  -> s
  <- s
  ...
  -> e, es, ss
  <- e, ee, se

XK:
  <- s
  ...
  -> e, es
  <- e, ee
  -> s, se

XX:
  -> e
  <- e, ee, s, es
  -> s, se

IK:
  <- s
  ...
  -> e, es, s, ss
  <- e, ee, se
`;

const TOKENS = new Set(['e', 's', 'ee', 'es', 'se', 'ss']);

function parsePatterns(text) {
  const patterns = {};
  for (const block of text.trim().split('\n\n')) {
    const [head, ...lines] = block.split('\n').map((l) => l.trim());
    const cut = lines.indexOf('...');
    const pre = cut < 0 ? [] : lines.slice(0, cut);
    const msgs = cut < 0 ? lines : lines.slice(cut + 1);
    const parse = (line) => {
      const [arrow, rest] = [line.slice(0, 2), line.slice(3)];
      return [arrow, rest.split(',').map((t) => t.trim())];
    };
    const preI = pre.map(parse).find(([a]) => a === '->')?.[1] ?? [];
    const preR = pre.map(parse).find(([a]) => a === '<-')?.[1] ?? [];
    const messages = msgs.map(parse);
    messages.forEach(([arrow, toks], i) => {
      if (arrow !== (i % 2 ? '<-' : '->') || !toks.every((t) => TOKENS.has(t))) throw new Error(`bad pattern ${head}`);
    });
    const name = head.replace(/:$/, '');
    patterns[name] = { name, preInitiator: preI, preResponder: preR, messages: messages.map(([, t]) => t) };
  }
  return patterns;
}

export const PATTERNS = parsePatterns(PATTERN_TEXT);
const SUITE = '25519_ChaChaPoly_SHA256';

function parseProtocolName(name) {
  if (typeof name !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(name)) throw new NoiseError('bad protocol name');
  const m = /^Noise_([A-Za-z0-9+/]+)_([A-Za-z0-9+/]+_[A-Za-z0-9+/]+_[A-Za-z0-9+/]+)$/.exec(name);
  if (!m) throw new NoiseError(`malformed Noise protocol name ${name}`);
  if (!/^[A-Z0-9]+$/.test(m[1])) throw new NoiseError(`pattern modifiers are not supported: ${m[1]}`);
  if (!(m[1] in PATTERNS)) throw new NoiseError(`unsupported handshake pattern ${m[1]}`);
  if (m[2] !== SUITE) throw new NoiseError(`unsupported suite ${m[2]}`);
  return PATTERNS[m[1]];
}

/** Spec 5.1: a key k (or none) and a 64-bit counter nonce n. */
export class CipherState {
  constructor(key = null) {
    this.initializeKey(key);
  }

  initializeKey(key) {
    if (key !== null && key.length !== 32) throw new NoiseError('cipher key must be 32 bytes');
    this._k = key;
    this._n = 0n;
  }

  hasKey() {
    return this._k !== null;
  }

  get nonce() {
    return this._n;
  }

  setNonce(n) {
    if (n < 0n || n > MAX_NONCE) throw new NoiseError('nonce out of range');
    this._n = n;
  }

  _check(length) {
    if (this._n >= MAX_NONCE) throw new NoiseError('nonce exhausted; the session must be ended');
    if (length > MAX_MESSAGE_LEN) throw new NoiseError(`message longer than ${MAX_MESSAGE_LEN} bytes`);
  }

  encryptWithAd(ad, plaintext) {
    this._check(plaintext.length + (this._k ? TAGLEN : 0));
    if (!this._k) return plaintext;
    const out = chacha20poly1305(this._k, nonce(this._n), ad).encrypt(plaintext);
    this._n += 1n;
    return out;
  }

  /** On failure n is left unchanged (5.1) and DecryptError thrown. */
  decryptWithAd(ad, ciphertext) {
    this._check(ciphertext.length);
    if (!this._k) return ciphertext;
    let out;
    try {
      out = chacha20poly1305(this._k, nonce(this._n), ad).decrypt(ciphertext);
    } catch {
      throw new DecryptError('message failed authentication');
    }
    this._n += 1n;
    return out;
  }

  /** 4.2 default REKEY: ENCRYPT(k, maxnonce, zerolen, zeros)[:32]; n is kept. */
  rekey() {
    if (!this._k) throw new HandshakeStateError('rekey on a CipherState without a key');
    const n = this._n;
    const key = chacha20poly1305(this._k, nonce(MAX_NONCE), new Uint8Array(0)).encrypt(new Uint8Array(32));
    this.initializeKey(key.slice(0, 32));
    this._n = n;
  }

  toJSON() {
    return { hasKey: this.hasKey(), n: String(this._n) }; // never k
  }
}

/** Spec 5.2: a CipherState plus chaining key ck and hash h. */
export class SymmetricState {
  constructor(protocolName) {
    if (protocolName.length <= HASHLEN) {
      this._h = new Uint8Array(HASHLEN);
      this._h.set(protocolName);
    } else {
      this._h = hash(protocolName);
    }
    this._ck = this._h;
    this.cipherState = new CipherState(null);
  }

  mixKey(ikm) {
    const [ck, tempK] = hkdf(this._ck, ikm, 2);
    this._ck = ck;
    this.cipherState.initializeKey(tempK);
  }

  mixHash(data) {
    this._h = hash(concat(this._h, data));
  }

  mixKeyAndHash(ikm) {
    const [ck, tempH, tempK] = hkdf(this._ck, ikm, 3);
    this._ck = ck;
    this.mixHash(tempH);
    this.cipherState.initializeKey(tempK);
  }

  getHandshakeHash() {
    return this._h;
  }

  encryptAndHash(plaintext) {
    const ciphertext = this.cipherState.encryptWithAd(this._h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext) {
    const plaintext = this.cipherState.decryptWithAd(this._h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  split() {
    const [k1, k2] = hkdf(this._ck, new Uint8Array(0), 2);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

/**
 * Spec 5.3; the constructor is Initialize(). `s` and `e` are local private
 * keys (32 raw bytes), `rs`/`re` remote public keys, given only when the
 * pattern's pre-messages need them. A fixed `e` is for test vectors only.
 * Any error once processing has begun marks the state failed for good.
 */
export class HandshakeState {
  constructor(protocolName, initiator, prologue = new Uint8Array(0), { s = null, e = null, rs = null, re = null } = {}) {
    const pattern = parseProtocolName(protocolName);
    for (const key of [rs, re]) if (key !== null && key.length !== DHLEN) throw new NoiseError('remote public keys must be 32 bytes');
    this._pattern = pattern;
    this._initiator = Boolean(initiator);
    this._s = s;
    this._e = e;
    this._rs = rs;
    this._re = re;
    const [localPre, remotePre] = this._initiator
      ? [pattern.preInitiator, pattern.preResponder]
      : [pattern.preResponder, pattern.preInitiator];
    const sent = new Set(localPre);
    pattern.messages.forEach((toks, i) => {
      if ((i % 2 === 0) === this._initiator) toks.forEach((t) => sent.add(t));
    });
    if (sent.has('s') && s === null) throw new HandshakeStateError(`${pattern.name} needs a local static key`);
    for (const [token, key] of [['s', rs], ['e', re]]) {
      if ((key !== null) !== remotePre.includes(token))
        throw new HandshakeStateError(`${pattern.name}: remote '${token}' must be given iff it is in the peer's pre-message`);
    }
    if (localPre.includes('e') && e === null) throw new HandshakeStateError(`${pattern.name} needs a local ephemeral`);
    this._ss = new SymmetricState(utf8(protocolName));
    this._ss.mixHash(prologue);
    for (const [pre, local] of [[pattern.preInitiator, this._initiator], [pattern.preResponder, !this._initiator]]) {
      for (const token of pre) {
        if (local) this._ss.mixHash(publicKey(token === 's' ? s : e));
        else this._ss.mixHash(token === 's' ? rs : re);
      }
    }
    this._index = 0;
    this._failed = false;
    this._h = null;
    this._ciphers = null;
  }

  get complete() {
    return this._ciphers !== null;
  }

  /** rs, or null after a failure (it may not be authenticated). */
  get remoteStatic() {
    return this._failed ? null : this._rs;
  }

  get handshakeHash() {
    if (this._h === null) throw new HandshakeStateError('handshake not complete');
    return this._h;
  }

  /** Split() oriented for this side: [send, recv]; the unused one-way direction is null. */
  get cipherStates() {
    if (this._ciphers === null) throw new HandshakeStateError('handshake not complete');
    return this._ciphers;
  }

  _nextTokens(writing) {
    if (this._failed) throw new HandshakeStateError('handshake failed; it must be abandoned');
    if (this.complete) throw new HandshakeStateError('handshake complete; use cipherStates');
    if (writing !== ((this._index % 2 === 0) === this._initiator))
      throw new HandshakeStateError('not our turn to ' + (writing ? 'write' : 'read'));
    return this._pattern.messages[this._index];
  }

  _mixDh(token) {
    // The first letter is the initiator's key, the second the responder's.
    const [mine, theirs] = this._initiator ? [token[0], token[1]] : [token[1], token[0]];
    const priv = mine === 'e' ? this._e : this._s;
    const pub = theirs === 'e' ? this._re : this._rs;
    if (priv === null || pub === null) throw new HandshakeStateError(`missing key for ${token}`);
    this._ss.mixKey(dh(priv, pub));
  }

  writeMessage(payload = new Uint8Array(0)) {
    const tokens = this._nextTokens(true);
    let keyed = this._ss.cipherState.hasKey();
    let length = payload.length;
    for (const token of tokens) {
      keyed = keyed || ['ee', 'es', 'se', 'ss'].includes(token);
      if (token === 'e') length += DHLEN;
      else if (token === 's') length += DHLEN + (keyed ? TAGLEN : 0);
    }
    if (length + (keyed ? TAGLEN : 0) > MAX_MESSAGE_LEN) throw new NoiseError(`handshake message longer than ${MAX_MESSAGE_LEN} bytes`);
    const parts = [];
    try {
      for (const token of tokens) {
        if (token === 'e') {
          if (this._e === null) this._e = generateKeypair();
          const ePub = publicKey(this._e);
          parts.push(ePub);
          this._ss.mixHash(ePub);
        } else if (token === 's') {
          parts.push(this._ss.encryptAndHash(publicKey(this._s)));
        } else {
          this._mixDh(token);
        }
      }
      parts.push(this._ss.encryptAndHash(payload));
    } catch (error) {
      this._failed = true;
      throw error;
    }
    this._advance();
    return concat(...parts);
  }

  readMessage(message) {
    const tokens = this._nextTokens(false);
    let payload;
    try {
      if (message.length > MAX_MESSAGE_LEN) throw new NoiseError(`handshake message longer than ${MAX_MESSAGE_LEN} bytes`);
      let pos = 0;
      const take = (n) => {
        if (message.length - pos < n) throw new NoiseError('handshake message truncated');
        pos += n;
        return message.slice(pos - n, pos);
      };
      for (const token of tokens) {
        if (token === 'e') {
          this._re = take(DHLEN);
          this._ss.mixHash(this._re);
        } else if (token === 's') {
          this._rs = this._ss.decryptAndHash(take(this._ss.cipherState.hasKey() ? DHLEN + TAGLEN : DHLEN));
        } else {
          this._mixDh(token);
        }
      }
      payload = this._ss.decryptAndHash(message.slice(pos));
    } catch (error) {
      this._failed = true;
      throw error;
    }
    this._advance();
    return payload;
  }

  _advance() {
    this._index += 1;
    if (this._index < this._pattern.messages.length) return;
    const [c1, c2] = this._ss.split();
    const oneWay = this._pattern.messages.length === 1;
    this._ciphers = this._initiator ? [c1, oneWay ? null : c2] : [oneWay ? null : c2, c1];
    this._h = this._ss.getHandshakeHash();
    this._ss = null; // section 5: keep only h; drop ck and the private keys
    this._e = null;
    this._s = null;
  }

  toJSON() {
    return { pattern: this._pattern.name, initiator: this._initiator, message: this._index };
  }
}
