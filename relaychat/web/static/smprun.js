// Runs SMP for the page (inside smpworker.js) and for node tests: one
// SocialistMillionaire per conversation, and the sentences of
// docs/protocol.rst 14.2 / relaychat/client/channel.py for what happens.
import { SMPError, SMPUnexpectedMessage, SocialistMillionaire, State } from './smp.js';

export class SmpRunner {
  constructor() {
    this._machines = new Map();
  }

  _machine(key) {
    let m = this._machines.get(key);
    if (!m) this._machines.set(key, (m = new SocialistMillionaire()));
    return m;
  }

  /** Forget a conversation's run (session over: SMP state never outlives it). */
  drop(key) {
    this._machines.get(key)?.abort();
    this._machines.delete(key);
  }

  state(key) {
    return this._machine(key).state;
  }

  /** {bodies: [...], events: [...]}; bodies go out via Channel.sendSmp in order. */
  start(key, value) {
    const m = this._machine(key);
    const bodies = m.inProgress && m.state !== State.AWAITING_SECRET ? [m.abort()] : [];
    if (m.state === State.AWAITING_SECRET) return { bodies: [], events: [{ type: 'smp-pending' }] };
    bodies.push(m.start(value));
    return { bodies, events: [] };
  }

  respond(key, value) {
    return { bodies: [this._machine(key).respond(value)], events: [] };
  }

  abort(key) {
    return { bodies: [this._machine(key).abort()], events: [] };
  }

  receive(key, body, peerNick) {
    const m = this._machine(key);
    let reply;
    try {
      reply = m.receive(body);
    } catch (e) {
      if (!(e instanceof SMPError)) throw e;
      return {
        bodies: [m.abort()],
        events: [{ type: 'smp-aborted', quiet: e instanceof SMPUnexpectedMessage,
          reason: `The secret check with ${peerNick} failed and was stopped: ${e.message}` }],
      };
    }
    const bodies = reply ? [reply] : [];
    if (m.outcome !== null && !m.inProgress) return { bodies, events: [{ type: 'smp-result', equal: m.outcome, reason: resultSentence(m.outcome, peerNick) }] };
    if (m.state === State.AWAITING_SECRET) return { bodies, events: [{ type: 'smp-requested' }] };
    if (m.peerAborted) return { bodies, events: [{ type: 'smp-aborted', quiet: false, reason: `${peerNick} stopped the secret check.` }] };
    return { bodies, events: [] };
  }
}

export function resultSentence(equal, nick) {
  return equal
    ? `${nick} typed the same secret. Nobody is intercepting this session (unless someone else knows the secret).`
    : 'The secrets differ. Either one of you typed something else, or someone is intercepting this session.';
}
