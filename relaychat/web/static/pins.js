// Trust on first use (docs/protocol.rst section 13): pinned identity keys
// per (relay server_id, canonical nickname), and whether the user verified
// each (safety number compared or SMP passed). Plain data in a Map; the page
// persists it (IndexedDB) through `save`, node tests keep it in memory.
import { b64encode, equal } from './bytes.js';
import { PinStatus } from './channel.js';

const NICK = /^[a-z][a-z0-9_-]{1,23}$/;

function keyOf(serverId, nick) {
  const canonical = nick.toLowerCase();
  if (!NICK.test(canonical)) throw new Error(`${nick} is not a valid nickname.`);
  return `${b64encode(serverId)} ${canonical}`;
}

export class KnownPeers {
  /** `records`: [{relay, nick, key: Uint8Array, verified: bool}] as saved before. */
  constructor(records = [], save = () => {}) {
    this._pins = new Map(records.map((r) => [`${r.relay} ${r.nick}`, { key: r.key, verified: Boolean(r.verified) }]));
    this._save = save;
  }

  records() {
    return [...this._pins].map(([k, v]) => {
      const [relay, nick] = k.split(' ');
      return { relay, nick, key: v.key, verified: v.verified };
    });
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
      this._pins.set(keyOf(serverId, nick), { key: identityPub.slice(), verified: false });
      this._save(this.records());
    }
    return status;
  }

  /** The user accepted a new key after checking it: pinned, not yet verified. */
  replace(serverId, nick, identityPub) {
    this._pins.set(keyOf(serverId, nick), { key: identityPub.slice(), verified: false });
    this._save(this.records());
  }

  verified(serverId, nick, identityPub) {
    const entry = this._pins.get(keyOf(serverId, nick));
    return Boolean(entry && entry.verified && equal(entry.key, identityPub));
  }

  /** Mark the pinned key verified, only if it is still the key that was checked. */
  markVerified(serverId, nick, identityPub) {
    const entry = this._pins.get(keyOf(serverId, nick));
    if (!entry || !equal(entry.key, identityPub)) return false;
    entry.verified = true;
    this._save(this.records());
    return true;
  }

  /** What a Channel asks about one peer. */
  source(serverId, nick) {
    return { check: (key) => this.check(serverId, nick, key), pinned: () => this.get(serverId, nick) };
  }
}
