// End-to-end delivery receipts (docs/protocol.rst section 11, type 0x04 RECEIPT):
// a port of relaychat/client/receipts.py. The peer answers every TEXT with
// RECEIPT n, "I have every message you sent up to your number n". Unconfirmed
// is the sender's side: its TEXTs not confirmed yet, each kept only by its
// first words (what the user is told if the conversation is cut off), and
// bounded, since a peer that never confirms must not make us hold them all.

export const RECEIPT_SIZE = 8;
export const MAX_UNCONFIRMED = 10000; // named by their first words; older ones only counted
export const PREVIEW_CHARS = 40;

/** How a sent message is named: its first words, white space collapsed, cut at a word near `limit`. */
export function firstWords(text, limit = PREVIEW_CHARS) {
  let shown = '';
  for (const word of text.split(/\s+/u).filter(Boolean)) {
    const candidate = shown ? `${shown} ${word}` : word;
    if ([...candidate].length > limit) return (shown || [...word].slice(0, limit).join('')) + '\u2026';
    shown = candidate;
  }
  return shown;
}

export function encodeReceipt(number) {
  const body = new Uint8Array(RECEIPT_SIZE);
  new DataView(body.buffer).setBigUint64(0, BigInt(number));
  return body;
}

/** The number in a RECEIPT body; 0 (never valid) if the body is malformed. */
export function decodeReceipt(body) {
  if (body.length !== RECEIPT_SIZE) return 0;
  const n = new DataView(body.buffer, body.byteOffset, RECEIPT_SIZE).getBigUint64(0);
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

/** Our TEXT messages the peer has not confirmed yet, oldest first. */
export class Unconfirmed {
  constructor(limit = MAX_UNCONFIRMED) {
    this._limit = limit;
    this._words = new Map(); // number -> first words (Map keeps insertion order)
    this._forgotten = 0; // unconfirmed, but past the limit: counted, not named
    this.confirmed = 0; // the peer has every message of ours up to this number
  }

  get size() {
    return this._words.size + this._forgotten;
  }

  get items() {
    return [...this._words.entries()];
  }

  sent(number, text) {
    if (this._words.size >= this._limit && this._words.size) {
      this._words.delete(this._words.keys().next().value);
      this._forgotten += 1;
    }
    this._words.set(number, firstWords(text));
  }

  /** Apply RECEIPT `number` (`sent`: messages we sent). [number, words] pairs now delivered, or null if impossible. */
  confirm(number, sent) {
    if (!(this.confirmed < number && number <= sent)) return null;
    this.confirmed = number;
    const delivered = [...this._words.entries()].filter(([n]) => n <= number);
    for (const [n] of delivered) this._words.delete(n);
    if (!this._words.size) this._forgotten = 0; // receipts are cumulative
    return delivered;
  }
}
