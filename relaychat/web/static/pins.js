// Trust on first use (docs/protocol.rst section 13): pinned identity keys
// per (relay server_id, canonical nickname), and whether the user verified
// each (safety number compared or SMP passed). As relaychat/client/contacts.py,
// a verification belongs to the relay, the nickname AND the key it was made
// for: it is kept with that key ({how, time, key}), read as verified only for
// exactly that key, and accepting a changed key drops it. Plain data in a Map;
// the page persists it (IndexedDB) through `save`, node tests keep it in memory.
// Bounded as relaychat/crypto/pins.py: at most MAX_PINS_PER_RELAY nicknames per
// relay (a hostile relay can present any number of first contacts); at the bound
// a first contact is refused with PinsFull, and no pin is ever dropped for room.
import { b64encode, equal } from './bytes.js';
import { PinStatus } from './channel.js';

const NICK = /^[a-z][a-z0-9_-]{1,23}$/;
export const MAX_PINS_PER_RELAY = 10000; // as relaychat/crypto/pins.py

/** A first contact beyond the bound: refused (the conversation or mail does not go ahead), never made room for. */
export class PinsFull extends Error {}

function keyOf(serverId, nick) {
  const canonical = nick.toLowerCase();
  if (!NICK.test(canonical)) throw new Error(`${nick} is not a valid nickname.`);
  return `${b64encode(serverId)} ${canonical}`;
}

export const How = Object.freeze({ SMP: 'smp', SAFETY_NUMBER: 'number' });

/** A saved verification, only if it names the key it was made for (older records: none). */
function verificationOf(r) {
  const v = r.verified;
  return v && typeof v === 'object' && v.key instanceof Uint8Array && equal(v.key, r.key) && Object.values(How).includes(v.how)
    ? { how: v.how, time: Number(v.time) || 0, key: v.key } : null;
}

export class KnownPeers {
  /** `records`: [{relay, nick, key: Uint8Array, verified: {how, time, key} | null}] as saved before. */
  constructor(records = [], save = () => {}) {
    this._pins = new Map(records.map((r) => [`${r.relay} ${r.nick}`, { key: r.key, verified: verificationOf(r) }]));
    this._save = save;
    this.maxPerRelay = MAX_PINS_PER_RELAY;
  }

  records() {
    return [...this._pins].map(([k, v]) => {
      const [relay, nick] = k.split(' ');
      return { relay, nick, key: v.key, verified: v.verified && { ...v.verified } };
    });
  }

  /** {how, time} if the user verified exactly this key for this nickname on this relay, else null. */
  verification(serverId, nick, identityPub) {
    const v = this._pins.get(keyOf(serverId, nick))?.verified;
    return v && equal(v.key, identityPub) ? { how: v.how, time: v.time } : null;
  }

  get(serverId, nick) {
    return this._pins.get(keyOf(serverId, nick))?.key ?? null;
  }

  check(serverId, nick, identityPub) {
    const entry = this._pins.get(keyOf(serverId, nick));
    if (!entry) return PinStatus.NEW;
    return equal(entry.key, identityPub) ? PinStatus.MATCH : PinStatus.CHANGED;
  }

  /** Pin on first contact; never over a different key (that is a key change). */
  pin(serverId, nick, identityPub) {
    const status = this.check(serverId, nick, identityPub);
    if (status === PinStatus.NEW) {
      const relay = `${b64encode(serverId)} `;
      let count = 0;
      for (const k of this._pins.keys()) if (k.startsWith(relay)) count += 1;
      if (count >= this.maxPerRelay)
        throw new PinsFull(`${nick} is a first contact, but ${this.maxPerRelay} nicknames are already pinned for this relay, ` +
          'the most this browser keeps; none is dropped to make room, so this contact is refused.');
      this._pins.set(keyOf(serverId, nick), { key: identityPub.slice(), verified: null });
      this._save(this.records());
    }
    return status;
  }

  /** The user accepted a new key after checking it: pinned, not yet verified (the old key's verification is gone). */
  replace(serverId, nick, identityPub) {
    this._pins.set(keyOf(serverId, nick), { key: identityPub.slice(), verified: null });
    this._save(this.records());
  }

  verified(serverId, nick, identityPub) {
    const entry = this._pins.get(keyOf(serverId, nick));
    return Boolean(entry && equal(entry.key, identityPub) && this.verification(serverId, nick, identityPub));
  }

  /** Mark the pinned key verified (`how`: How.SMP or How.SAFETY_NUMBER), only if it is still the key that was checked. */
  markVerified(serverId, nick, identityPub, how = How.SAFETY_NUMBER, time = Math.floor(Date.now() / 1000)) {
    const entry = this._pins.get(keyOf(serverId, nick));
    if (!entry || !equal(entry.key, identityPub) || !Object.values(How).includes(how)) return false;
    entry.verified = { how, time, key: identityPub.slice() };
    this._save(this.records());
    return true;
  }

  /**
   * The user accepted the relay's new id as "the same relay, rebuilt" (section 13):
   * every key pinned under `oldId`, with its verification, is pinned under `newId`
   * where nothing is pinned yet (a pin made under the new id stands), so a relay
   * that merely claims to be rebuilt gains nothing. Returns how many were carried.
   */
  carryOver(oldId, newId) {
    const from = `${b64encode(oldId)} `;
    const to = `${b64encode(newId)} `;
    let count = 0;
    for (const k of this._pins.keys()) if (k.startsWith(to)) count += 1;
    let carried = 0;
    for (const [k, entry] of [...this._pins]) {
      if (!k.startsWith(from) || count >= this.maxPerRelay) continue;
      const target = to + k.slice(from.length);
      if (this._pins.has(target)) continue;
      this._pins.set(target, { key: entry.key.slice(), verified: entry.verified && { ...entry.verified, key: entry.verified.key.slice() } });
      count += 1;
      carried += 1;
    }
    if (carried) this._save(this.records());
    return carried;
  }

  /** What a Channel asks about one peer. */
  source(serverId, nick) {
    return { check: (key) => this.check(serverId, nick, key), pinned: () => this.get(serverId, nick) };
  }
}
