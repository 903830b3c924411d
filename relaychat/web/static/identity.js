// Identity keys, the static-key certificate, the registration proof, the
// identity binding and proof of work (docs/protocol.rst sections 5 and 10),
// byte for byte as relaychat/crypto/identity.py.
import { ed25519, x25519 } from './vendor/node_modules/@noble/curves/ed25519.js';
import { concat, utf8 } from './bytes.js';
export { MAX_POW_BITS, POW_CONTEXT, powOk, solvePow } from './pow.js';

export const STATIC_CONTEXT = utf8('relaychat static key v1\x00');
export const REGISTER_CONTEXT = utf8('relaychat register v1\x00');
export const KEY_SIZE = 32;
export const SIGNATURE_SIZE = 64;
export const BINDING_VERSION = 0x01;
export const BINDING_SIZE = 1 + KEY_SIZE + SIGNATURE_SIZE;

const P = 2n ** 255n - 19n;

export class KeyFormatError extends Error {}
export class BindingError extends Error {}

function requireBytes(value, size, what) {
  if (!(value instanceof Uint8Array)) throw new KeyFormatError(`The ${what} must be bytes.`);
  if (value.length !== size) throw new KeyFormatError(`The ${what} must be ${size} bytes long, not ${value.length}.`);
  return value;
}

/** A canonical Ed25519 point that is not of small order (a small-order key signs for anyone). */
export function checkIdentityPublic(raw) {
  requireBytes(raw, KEY_SIZE, 'identity key');
  let point;
  try {
    point = ed25519.Point.fromBytes(raw, false); // RFC 8032 decoding: y < p, no "negative zero"
  } catch {
    throw new KeyFormatError('The identity key is not a valid Ed25519 public key.');
  }
  if (point.isSmallOrder()) throw new KeyFormatError('The identity key is a weak (small-order) Ed25519 key.');
  return raw;
}

/** Below 2^255 - 19 (so the top bit is clear) and not of small order. */
export function checkStaticPublic(raw) {
  requireBytes(raw, KEY_SIZE, 'static key');
  let n = 0n;
  for (let i = raw.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(raw[i]);
  if (n >= P) throw new KeyFormatError('The static key is not a canonical X25519 public key.');
  try {
    // Clamped scalars are multiples of the cofactor: the result is all-zero
    // (and noble throws) exactly for small-order points.
    x25519.getSharedSecret(PROBE, raw);
  } catch {
    throw new KeyFormatError('The static key is a weak (small-order) X25519 key.');
  }
  return raw;
}
const PROBE = x25519.utils.randomSecretKey();

export function staticSignedData(staticPub) {
  return concat(STATIC_CONTEXT, staticPub);
}

/** True iff `sig` certifies `staticPub`; KeyFormatError for malformed fields. */
export function verifyStaticSig(identityPub, staticPub, sig) {
  checkIdentityPublic(identityPub);
  checkStaticPublic(staticPub);
  requireBytes(sig, SIGNATURE_SIZE, 'static key signature');
  try {
    return ed25519.verify(sig, staticSignedData(staticPub), identityPub, { zip215: false });
  } catch {
    return false;
  }
}

export function registrationMessage(serverId, challenge, identityPub, staticPub, staticSig, canonicalNick) {
  if (canonicalNick !== canonicalNick.toLowerCase() || !canonicalNick) throw new Error('nickname not canonical');
  return concat(
    REGISTER_CONTEXT,
    requireBytes(serverId, 32, 'server id'),
    requireBytes(challenge, 32, 'challenge'),
    requireBytes(identityPub, KEY_SIZE, 'identity key'),
    requireBytes(staticPub, KEY_SIZE, 'static key'),
    requireBytes(staticSig, SIGNATURE_SIZE, 'static key signature'),
    utf8(canonicalNick),
  );
}

export function parseBinding(binding) {
  if (!(binding instanceof Uint8Array)) throw new BindingError('The peer sent no identity binding.');
  if (binding.length !== BINDING_SIZE)
    throw new BindingError(`The peer's identity binding is ${binding.length} bytes long instead of ${BINDING_SIZE}.`);
  if (binding[0] !== BINDING_VERSION) throw new BindingError(`The peer's identity binding has unknown version ${binding[0]}.`);
  return [binding.slice(1, 1 + KEY_SIZE), binding.slice(1 + KEY_SIZE)];
}

/** The identity key of a binding that certifies `rs` (this handshake's remote static). */
export function verifyBinding(binding, rs) {
  const [identityPub, sig] = parseBinding(binding);
  if (!(rs instanceof Uint8Array)) throw new BindingError('The peer sent no static key.');
  let ok;
  try {
    ok = verifyStaticSig(identityPub, rs, sig);
  } catch (e) {
    throw new BindingError(`The peer's keys are unusable: ${e.message}`);
  }
  if (!ok)
    throw new BindingError("The peer's identity key did not certify the key used in this conversation; someone may be intercepting it.");
  return identityPub;
}

class KeyPair {
  _init(identityPublic, staticSecret, staticSig, sign) {
    this.identityPublic = identityPublic;
    this.staticPrivate = requireBytes(staticSecret, 32, 'static secret');
    this.staticPublic = x25519.getPublicKey(staticSecret);
    this.staticSig = staticSig;
    this._sign = sign;
  }

  binding() {
    return concat(new Uint8Array([BINDING_VERSION]), this.identityPublic, this.staticSig);
  }

  /** The PROVE signature (section 5); a Promise, since a WebCrypto key signs asynchronously. */
  async signRegistration(serverId, challenge, canonicalNick) {
    const m = registrationMessage(serverId, challenge, this.identityPublic, this.staticPublic, this.staticSig, canonicalNick);
    return this._sign(m);
  }

  toJSON() {
    return { identity: this.constructor.name }; // never the secrets
  }
}

/**
 * One person's keys as raw bytes: an Ed25519 identity seed and an X25519
 * static secret (noble). Used where WebCrypto has no Ed25519, and for a
 * key kept under a passphrase (sealed bytes in IndexedDB).
 */
export class Identity extends KeyPair {
  constructor(identitySecret, staticSecret) {
    super();
    requireBytes(identitySecret, 32, 'identity secret');
    const identityPublic = ed25519.getPublicKey(identitySecret);
    const staticSig = ed25519.sign(staticSignedData(x25519.getPublicKey(staticSecret)), identitySecret);
    this._init(identityPublic, staticSecret, staticSig, async (m) => ed25519.sign(m, identitySecret));
    this._identitySecret = identitySecret;
  }

  static generate() {
    return new Identity(ed25519.utils.randomSecretKey(), x25519.utils.randomSecretKey());
  }

  /** The raw secrets, for sealed storage only. */
  secrets() {
    return { identity: this._identitySecret.slice(), static: this.staticPrivate.slice() };
  }
}

const ED25519 = { name: 'Ed25519' };

/** True when this browser's WebCrypto makes and uses Ed25519 keys (a secure context, a recent browser). */
export async function webCryptoEd25519() {
  try {
    const pair = await globalThis.crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
    const sig = new Uint8Array(await crypto.subtle.sign(ED25519, pair.privateKey, new Uint8Array([1])));
    const pub = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    return ed25519.verify(sig, new Uint8Array([1]), pub, { zip215: false }); // "equal": same RFC 8032 signatures
  } catch {
    return false;
  }
}

/**
 * The identity key as a non-extractable WebCrypto CryptoKey: page code can
 * sign with it but can never read it out (IndexedDB stores the CryptoKey
 * object itself). The static key stays raw bytes: Noise needs its DH
 * synchronously, and a static key can be re-certified, an identity cannot.
 */
export class WebCryptoIdentity extends KeyPair {
  static async generate() {
    const pair = await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
    const identityPublic = checkIdentityPublic(new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)));
    const staticSecret = x25519.utils.randomSecretKey();
    const sign = async (m) => new Uint8Array(await crypto.subtle.sign(ED25519, pair.privateKey, m));
    const staticSig = await sign(staticSignedData(x25519.getPublicKey(staticSecret)));
    return WebCryptoIdentity.load({ privateKey: pair.privateKey, identityPublic, staticSecret, staticSig });
  }

  /** From what record() gave (as IndexedDB returns it). */
  static load({ privateKey, identityPublic, staticSecret, staticSig }) {
    const identity = new WebCryptoIdentity();
    identity._init(identityPublic, staticSecret, staticSig,
      async (m) => new Uint8Array(await crypto.subtle.sign(ED25519, privateKey, m)));
    identity._record = { privateKey, identityPublic, staticSecret, staticSig };
    if (!verifyStaticSig(identityPublic, identity.staticPublic, staticSig)) throw new KeyFormatError('The stored keys do not belong together.');
    return identity;
  }

  record() {
    return { ...this._record };
  }
}

/** A new identity: the identity key non-extractable in WebCrypto where the browser can, else raw (noble). */
export async function makeIdentity() {
  return (await webCryptoEd25519()) ? WebCryptoIdentity.generate() : Identity.generate();
}

