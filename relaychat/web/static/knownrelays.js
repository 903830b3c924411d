// The relay id remembered for each relay address (docs/protocol.rst section
// 13), the browser's counterpart of relaychat/client/known_relays.py. Pins are
// keyed by the relay's server_id, which the relay chooses: a relay announcing
// a fresh one would turn every pinned contact back into a first contact, and a
// man in the middle would then go without a key-change warning. So, as ssh's
// known_hosts, the first server_id seen at an address is kept, and another one
// there stops the sign-in (RelayChanged) until the user accepts it (replace).
// Bounded as the reference client: at most MAX_RELAYS addresses; beyond that a
// first contact with a new address is refused, never made room for.
import { b64decode, b64encode, equal } from './bytes.js';
import { PinStatus } from './channel.js';
import { fingerprint } from './safety.js';

export const MAX_RELAYS = 1000; // as relaychat/client/known_relays.py

/** More relay addresses than this browser keeps: a new one is refused. */
export class RelaysFull extends Error {
  constructor(message) {
    super(message);
    this.code = 'relays-full';
  }
}

/** The relay at a known address announced another id: as loud as a key change. */
export class RelayChanged extends Error {
  constructor(address, knownId, newId) {
    super(`WARNING: the relay at ${address} has CHANGED its identity (remembered ${fingerprint(knownId)}, ` +
      `now ${fingerprint(newId)}). Someone may be intercepting; not signing in. ` +
      "Ask the relay's operator before accepting the new identity.");
    Object.assign(this, { code: 'relay-changed', address, knownId, newId });
  }
}

/** The name a relay is remembered by: host:port of its WebSocket URL (ws 80, wss 443 by default), host lower-case. */
export function relayAddress(url) {
  const u = new URL(url);
  const port = u.port || (u.protocol === 'wss:' ? '443' : '80');
  return `${u.hostname.toLowerCase()}:${port}`;
}

export class KnownRelays {
  /** `records`: [{address, id: base64}] as saved before. */
  constructor(records = [], save = () => {}) {
    this._ids = new Map(); // address -> the id, or null for an unreadable record
    this._unreadable = new Map(); // address -> that record's id as it was saved: kept, so it stays disputed
    for (const r of records) {
      const address = String(r.address);
      try {
        this._ids.set(address, b64decode(r.id, { size: 32 }));
      } catch {
        this._ids.set(address, null); // unreadable: disputed, not unknown (that would accept anything)
        this._unreadable.set(address, r.id);
      }
    }
    this._save = save;
    this.limit = MAX_RELAYS;
  }

  records() {
    return [...this._ids].map(([address, id]) => ({ address, id: id ? b64encode(id) : this._unreadable.get(address) }));
  }

  check(address, serverId) {
    if (!this._ids.has(address)) return PinStatus.NEW;
    const known = this._ids.get(address);
    return known && equal(known, serverId) ? PinStatus.MATCH : PinStatus.CHANGED;
  }

  /** At sign-in: remember a first contact, pass a match, throw RelayChanged for another id. */
  admit(address, serverId) {
    const status = this.check(address, serverId);
    if (status === PinStatus.CHANGED) throw new RelayChanged(address, this._ids.get(address) ?? new Uint8Array(32), serverId);
    if (status === PinStatus.NEW) {
      if (this._ids.size >= this.limit)
        throw new RelaysFull(`${address} is a relay this browser has not met, but it already remembers ${this.limit} relays, ` +
          'the most it keeps; none is forgotten to make room, so this relay is refused.');
      this._ids.set(address, serverId.slice());
      this._save(this.records());
    }
    return status;
  }

  /** The user accepted the relay's new id after asking its operator. */
  replace(address, serverId) {
    this._ids.set(address, serverId.slice());
    this._unreadable.delete(address);
    this._save(this.records());
  }
}
