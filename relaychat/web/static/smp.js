// The Socialist Millionaires' Protocol of OTR version 3 with relaychat's
// encoding and secret binding (docs/protocol.rst section 14), a port of
// relaychat/crypto/smp.py: same messages, checks, states and sentences.
// Arithmetic is plain BigInt: the group operation of 14.1 (square-and-
// multiply, and Fermat inversion since p is prime), as Python's pow().
// Only @noble/hashes is imported (relative paths), so this module loads in
// a Web Worker, where import maps (needed by @noble/curves) do not apply.
import { sha256 } from './vendor/node_modules/@noble/hashes/sha2.js';
import { randomBytes } from './vendor/node_modules/@noble/hashes/utils.js';
import { concat, equal, fromBigInt, toBigInt, utf8 } from './bytes.js';

export const MODULUS = BigInt(
  '0xFFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD' +
    'EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED' +
    'EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F' +
    '83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF',
);
export const GENERATOR = 2n;
export const ORDER = (MODULUS - 1n) / 2n;
const MODULUS_BYTES = 192;
const HASH_BYTES = 32;

export const Kind = Object.freeze({ SMP1: 1, SMP2: 2, SMP3: 3, SMP4: 4, ABORT: 5 });
const KIND_NAME = { 1: 'SMP1', 2: 'SMP2', 3: 'SMP3', 4: 'SMP4', 5: 'ABORT' };
const FIELDS = {
  1: ['g2a', 'c2', 'D2', 'g3a', 'c3', 'D3'],
  2: ['g2b', 'c2', 'D2', 'g3b', 'c3', 'D3', 'Pb', 'Qb', 'cP', 'D5', 'D6'],
  3: ['Pa', 'Qa', 'cP', 'D5', 'D6', 'Ra', 'cR', 'D7'],
  4: ['Rb', 'cR', 'D7'],
  5: [],
};
const MAX_MPI_BYTES = MODULUS_BYTES;
export const MAX_MESSAGE_BYTES = 1 + 11 * (4 + MAX_MPI_BYTES);

export const State = Object.freeze({
  EXPECT1: 'expect1', AWAITING_SECRET: 'awaiting-secret', EXPECT2: 'expect2', EXPECT3: 'expect3', EXPECT4: 'expect4',
});

/** The peer sent something malformed, out of range, unproven or unexpected; the machine has reset. */
export class SMPError extends Error {}
export class SMPUnexpectedMessage extends SMPError {}
/** The local program called the machine at the wrong time; state unchanged. */
export class SMPUsageError extends Error {}

function mpi(value) {
  const raw = value === 0n ? new Uint8Array(0) : fromBigInt(value);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, raw.length);
  return concat(len, raw);
}

export function encodeMessage(kind, values) {
  if (values.length !== FIELDS[kind].length) throw new Error(`${KIND_NAME[kind]} carries ${FIELDS[kind].length} values`);
  return concat(new Uint8Array([kind]), ...values.map(mpi));
}

export function decodeMessage(data) {
  if (!data.length) throw new SMPError('The SMP message is empty.');
  if (data.length > MAX_MESSAGE_BYTES)
    throw new SMPError(`The SMP message is ${data.length} bytes long; no valid one exceeds ${MAX_MESSAGE_BYTES}.`);
  const kind = data[0];
  if (!(kind in FIELDS)) throw new SMPError(`The SMP message has unknown kind ${kind}.`);
  const name = KIND_NAME[kind];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = [];
  let pos = 1;
  for (const field of FIELDS[kind]) {
    if (data.length - pos < 4) throw new SMPError(`The ${name} message is truncated before ${field}.`);
    const length = view.getUint32(pos);
    pos += 4;
    if (length > MAX_MPI_BYTES)
      throw new SMPError(`The ${name} message declares ${field} as ${length} bytes; at most ${MAX_MPI_BYTES} are allowed.`);
    if (data.length - pos < length) throw new SMPError(`The ${name} message is truncated inside ${field}.`);
    const raw = data.subarray(pos, pos + length);
    pos += length;
    if (raw.length && raw[0] === 0)
      throw new SMPError(`The ${name} message encodes ${field} with a leading zero byte (not a minimal MPI).`);
    values.push(toBigInt(raw));
  }
  if (pos !== data.length) throw new SMPError(`The ${name} message has ${data.length - pos} unexpected trailing bytes.`);
  return [kind, values];
}

// Python's str.strip(): White_Space plus U+001C..U+001F (str.isspace).
const EDGE_SPACE = /^[\p{White_Space}\x1c-\x1f]+|[\p{White_Space}\x1c-\x1f]+$/gu;

export function normalizeUserSecret(text) {
  return text.normalize('NFKC').replace(EDGE_SPACE, '');
}

/** SHA-256(0x01 || fp_I || fp_R || h || UTF-8(normalize(text))) as a 32-byte digest (14.3). */
export function smpSecret(initiatorFp, responderFp, sessionId, userSecret) {
  for (const v of [initiatorFp, responderFp, sessionId]) if (v.length !== 32) throw new Error('fingerprints and session id are 32 bytes');
  const text = normalizeUserSecret(userSecret);
  if (!text) throw new Error('the SMP secret is empty');
  return sha256(concat(new Uint8Array([1]), initiatorFp, responderFp, sessionId, utf8(text)));
}

function hash(version, a, b) {
  return toBigInt(sha256(concat(new Uint8Array([version]), mpi(a), b === undefined ? new Uint8Array(0) : mpi(b))));
}

/** Uniform in 1..q-1 (rejection sampling over 1535-bit draws). */
function randomExponent() {
  for (;;) {
    const bytes = randomBytes(MODULUS_BYTES);
    bytes[0] &= 0x7f;
    const n = toBigInt(bytes);
    if (n < ORDER - 1n) return n + 1n;
  }
}

/** a^e mod p for 0 <= a < p, e >= 0 (left to right, one bit at a time). */
function exp(a, e) {
  let result = 1n;
  for (let i = BigInt(e.toString(2).length) - 1n; i >= 0n; i--) {
    result = (result * result) % MODULUS;
    if ((e >> i) & 1n) result = (result * a) % MODULUS;
  }
  return result;
}
const mul = (a, b) => (a * b) % MODULUS;
const div = (a, b) => (a * exp(b, MODULUS - 2n)) % MODULUS;
const modq = (n) => ((n % ORDER) + ORDER) % ORDER;
const same = (a, b, size) => equal(fromBigInt(a, size), fromBigInt(b, size));

function proveLog(x, version) {
  const r = randomExponent();
  const c = hash(version, exp(GENERATOR, r));
  return [c, modq(r - x * c)];
}
function checkLog(c, d, gx, version) {
  return same(c, hash(version, mul(exp(GENERATOR, d), exp(gx, c))), HASH_BYTES);
}
function proveCoords(g2, g3, r, secret, version) {
  const r5 = randomExponent(), r6 = randomExponent();
  const c = hash(version, exp(g3, r5), mul(exp(GENERATOR, r5), exp(g2, r6)));
  return [c, modq(r5 - r * c), modq(r6 - secret * c)];
}
function checkCoords(c, d5, d6, p, q, g2, g3, version) {
  const t1 = mul(exp(g3, d5), exp(p, c));
  const t2 = mul(mul(exp(GENERATOR, d5), exp(g2, d6)), exp(q, c));
  return same(c, hash(version, t1, t2), HASH_BYTES);
}
function proveEqualLogs(qab, x3, version) {
  const r7 = randomExponent();
  const c = hash(version, exp(GENERATOR, r7), exp(qab, r7));
  return [c, modq(r7 - x3 * c)];
}
function checkEqualLogs(c, d7, r, g3o, qab, version) {
  const t1 = mul(exp(GENERATOR, d7), exp(g3o, c));
  const t2 = mul(exp(qab, d7), exp(r, c));
  return same(c, hash(version, t1, t2), HASH_BYTES);
}

function checkRanges(kind, values) {
  const name = KIND_NAME[kind];
  FIELDS[kind].forEach((field, i) => {
    const v = values[i];
    if (field[0] === 'c') {
      if (v >= 1n << 256n) throw new SMPError(`${name}: ${field} is not a 256-bit hash value.`);
    } else if (field[0] === 'D') {
      if (!(v >= 1n && v < ORDER)) throw new SMPError(`${name}: exponent ${field} is not in the range 1..q-1.`);
    } else if (!(v >= 2n && v <= MODULUS - 2n)) {
      throw new SMPError(`${name}: group element ${field} is not in the range 2..p-2.`);
    }
  });
}

function checkSubgroup(kind, values) {
  FIELDS[kind].forEach((field, i) => {
    if (!'cD'.includes(field[0]) && exp(values[i], ORDER) !== 1n)
      throw new SMPError(`${KIND_NAME[kind]}: group element ${field} is not in the prime-order subgroup.`);
  });
}

function coerceSecret(secret) {
  if (!(secret instanceof Uint8Array) || secret.length !== HASH_BYTES) throw new Error('the SMP secret must come from smpSecret()');
  return toBigInt(secret);
}

/** One side of SMP with one peer in one session (the API of smp.SocialistMillionaire). */
export class SocialistMillionaire {
  constructor() {
    this.state = State.EXPECT1;
    this.outcome = null;
    this.peerAborted = false;
    this._clear();
  }

  get inProgress() {
    return this.state !== State.EXPECT1;
  }

  start(secret) {
    if (this.state === State.AWAITING_SECRET) throw new SMPUsageError('the peer has asked for a check: respond() to it or abort() it first');
    if (this.state !== State.EXPECT1) throw new SMPUsageError('a check is already under way: abort() it first');
    const x = coerceSecret(secret);
    const a2 = randomExponent(), a3 = randomExponent();
    const g2a = exp(GENERATOR, a2);
    const [c2, d2] = proveLog(a2, 1);
    const g3a = exp(GENERATOR, a3);
    const [c3, d3] = proveLog(a3, 2);
    this._beginRun();
    Object.assign(this, { _secret: x, _x2: a2, _x3: a3 });
    this.state = State.EXPECT2;
    return encodeMessage(Kind.SMP1, [g2a, c2, d2, g3a, c3, d3]);
  }

  respond(secret) {
    if (this.state !== State.AWAITING_SECRET) throw new SMPUsageError('there is no check request from the peer to respond to');
    const y = coerceSecret(secret);
    const { _x2: b2, _x3: b3, _g2: g2, _g3: g3 } = this;
    const g2b = exp(GENERATOR, b2);
    const [c2, d2] = proveLog(b2, 3);
    const g3b = exp(GENERATOR, b3);
    const [c3, d3] = proveLog(b3, 4);
    const r4 = randomExponent();
    const pb = exp(g3, r4);
    const qb = mul(exp(GENERATOR, r4), exp(g2, y));
    const [cp, d5, d6] = proveCoords(g2, g3, r4, y, 5);
    this._x2 = null;
    this._p = pb;
    this._q = qb;
    this.state = State.EXPECT3;
    return encodeMessage(Kind.SMP2, [g2b, c2, d2, g3b, c3, d3, pb, qb, cp, d5, d6]);
  }

  abort() {
    this._reset();
    this.peerAborted = false;
    return encodeMessage(Kind.ABORT, []);
  }

  /** One SMP body from the peer; returns the body to send back or null. Throws SMPError (machine reset). */
  receive(message) {
    try {
      const [kind, values] = decodeMessage(message);
      if (kind === Kind.ABORT) {
        this.peerAborted = this.state !== State.EXPECT1;
        this._reset();
        return null;
      }
      const expected = {
        1: [State.EXPECT1, State.AWAITING_SECRET], 2: [State.EXPECT2], 3: [State.EXPECT3], 4: [State.EXPECT4],
      }[kind];
      if (!expected.includes(this.state))
        throw new SMPUnexpectedMessage(`Received ${KIND_NAME[kind]} while in state ${stateName(this.state)}; the check was reset.`);
      checkRanges(kind, values);
      return [null, this._onSmp1, this._onSmp2, this._onSmp3, this._onSmp4][kind].call(this, values) ?? null;
    } catch (error) {
      if (error instanceof SMPError) {
        this._reset();
        this.peerAborted = false;
      }
      throw error;
    }
  }

  _onSmp1(v) {
    const [g2a, c2, d2, g3a, c3, d3] = v;
    if (!checkLog(c2, d2, g2a, 1)) throw new SMPError('SMP1: the proof of knowledge of log g2a (c2, D2) does not verify.');
    if (!checkLog(c3, d3, g3a, 2)) throw new SMPError('SMP1: the proof of knowledge of log g3a (c3, D3) does not verify.');
    checkSubgroup(Kind.SMP1, v);
    const b2 = randomExponent(), b3 = randomExponent();
    this._beginRun();
    Object.assign(this, { _x2: b2, _x3: b3, _g2: exp(g2a, b2), _g3: exp(g3a, b3), _g3o: g3a });
    this.state = State.AWAITING_SECRET;
  }

  _onSmp2(v) {
    const [g2b, c2, d2, g3b, c3, d3, pb, qb, cp, d5, d6] = v;
    const { _x2: a2, _x3: a3, _secret: x } = this;
    if (!checkLog(c2, d2, g2b, 3)) throw new SMPError('SMP2: the proof of knowledge of log g2b (c2, D2) does not verify.');
    if (!checkLog(c3, d3, g3b, 4)) throw new SMPError('SMP2: the proof of knowledge of log g3b (c3, D3) does not verify.');
    const g2 = exp(g2b, a2), g3 = exp(g3b, a3);
    if (!checkCoords(cp, d5, d6, pb, qb, g2, g3, 5))
      throw new SMPError('SMP2: the proof that Pb and Qb were built correctly (cP, D5, D6) does not verify.');
    checkSubgroup(Kind.SMP2, v);
    const r4 = randomExponent();
    const pa = exp(g3, r4);
    const qa = mul(exp(GENERATOR, r4), exp(g2, x));
    const [cpA, d5A, d6A] = proveCoords(g2, g3, r4, x, 6);
    const qab = div(qa, qb);
    const ra = exp(qab, a3);
    const [cr, d7] = proveEqualLogs(qab, a3, 7);
    Object.assign(this, { _g3o: g3b, _pab: div(pa, pb), _qab: qab, _x2: null, _secret: null, _g2: null, _g3: null });
    this.state = State.EXPECT4;
    return encodeMessage(Kind.SMP3, [pa, qa, cpA, d5A, d6A, ra, cr, d7]);
  }

  _onSmp3(v) {
    const [pa, qa, cp, d5, d6, ra, cr, d7] = v;
    const { _x3: b3, _g2: g2, _g3: g3, _g3o: g3o, _p: pb, _q: qb } = this;
    if (!checkCoords(cp, d5, d6, pa, qa, g2, g3, 6))
      throw new SMPError('SMP3: the proof that Pa and Qa were built correctly (cP, D5, D6) does not verify.');
    const pab = div(pa, pb), qab = div(qa, qb);
    if (!checkEqualLogs(cr, d7, ra, g3o, qab, 7)) throw new SMPError('SMP3: the proof that Ra was built correctly (cR, D7) does not verify.');
    checkSubgroup(Kind.SMP3, v);
    const rb = exp(qab, b3);
    const [crB, d7B] = proveEqualLogs(qab, b3, 8);
    const rab = exp(ra, b3);
    this._finish(same(pab, rab, MODULUS_BYTES)); // SMP4 goes out whatever the result
    return encodeMessage(Kind.SMP4, [rb, crB, d7B]);
  }

  _onSmp4(v) {
    const [rb, cr, d7] = v;
    const { _x3: a3, _g3o: g3o, _pab: pab, _qab: qab } = this;
    if (!checkEqualLogs(cr, d7, rb, g3o, qab, 8)) throw new SMPError('SMP4: the proof that Rb was built correctly (cR, D7) does not verify.');
    checkSubgroup(Kind.SMP4, v);
    this._finish(same(pab, exp(rb, a3), MODULUS_BYTES));
  }

  _clear() {
    Object.assign(this, { _secret: null, _x2: null, _x3: null, _g2: null, _g3: null, _g3o: null, _p: null, _q: null, _pab: null, _qab: null });
  }
  _beginRun() {
    this._clear();
    this.outcome = null;
    this.peerAborted = false;
  }
  _finish(equalResult) {
    this._clear();
    this.outcome = equalResult;
    this.state = State.EXPECT1;
  }
  _reset() {
    this._clear();
    this.outcome = null;
    this.state = State.EXPECT1;
  }
  toJSON() {
    return { state: this.state, outcome: this.outcome }; // never secrets
  }
}

function stateName(state) {
  return Object.keys(State).find((k) => State[k] === state);
}
