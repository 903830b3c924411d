// Read receipts for sealed mail (docs/protocol.rst section 12): a port of
// relaychat/client/mail_receipts.py. SentMail remembers each mail we sealed
// (message_id, relay, recipient, first words) until its receipt comes back;
// ReceiptOutbox holds the receipts we owe until the relay answered OK MAIL,
// so one refused or lost goes out again at the next login. Both are plain
// records the page persists (IndexedDB) through `save`, bounded by age and
// count (a relay can hand us any amount of mail, a peer may never answer).
import { b64encode, hex } from './bytes.js';

export const MAX_AGE = 90 * 86400; // as long as seen-mail ids are kept
export const MAX_SENT = 5000;
export const MAX_OWED = 1000;

class Records {
  constructor(records, save, limit) {
    this._records = records.slice(-limit);
    this._save = save;
    this._limit = limit;
  }
  _change(records, now) {
    this._records = records.filter((r) => r.time >= now - MAX_AGE).slice(-this._limit);
    this._save(this.records());
  }
  records() {
    return this._records.map((r) => ({ ...r }));
  }
}

/** Mail we sealed whose read receipt has not come back: {id (hex), relay (b64), nick, time, words}. */
export class SentMail extends Records {
  constructor(records = [], save = () => {}) {
    super(records, save, MAX_SENT);
  }
  add(messageId, serverId, nick, words, now) {
    this._change([...this._records, { id: hex(messageId), relay: b64encode(serverId), nick: nick.toLowerCase(), time: now, words }], now);
  }
  /** The mail a receipt from `nick` names, forgotten now; null if not ours, not to them, or not on this relay. */
  take(messageId, serverId, nick, now) {
    const [id, relay, canonical] = [hex(messageId), b64encode(serverId), nick.toLowerCase()];
    const found = this._records.find((r) => r.id === id && r.relay === relay && r.nick === canonical);
    if (!found) return null;
    this._change(this._records.filter((r) => r !== found), now);
    return found;
  }
}

/** Receipts we owe for mail we opened, until the relay stored them: {relay (b64), nick, id (hex), time}. */
export class ReceiptOutbox extends Records {
  constructor(records = [], save = () => {}) {
    super(records, save, MAX_OWED);
  }
  add(serverId, nick, messageId, now) {
    const owed = { relay: b64encode(serverId), nick: nick.toLowerCase(), id: hex(messageId), time: now };
    const same = (r) => r.relay === owed.relay && r.nick === owed.nick && r.id === owed.id;
    this._change([...this._records.filter((r) => !same(r)), owed], now);
    return owed;
  }
  pending(serverId) {
    const relay = b64encode(serverId);
    return this.records().filter((r) => r.relay === relay);
  }
  done(owed, now) {
    this._change(this._records.filter((r) => !(r.relay === owed.relay && r.nick === owed.nick && r.id === owed.id)), now);
  }
}
