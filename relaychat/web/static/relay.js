// The relay protocol (docs/protocol.rst sections 1-9, 17) from the client
// side, without I/O: lines in through receiveLine(), lines out through the
// `send` callback, replies matched to requests by a first-in first-out
// queue of non-FRAME commands (section 2). One definition of each line.
import { b64decode, b64encode, EncodingError } from './bytes.js';
import { MAX_POW_BITS } from './identity.js';

export const VERSION = '1';
/** Section 4; the same rule and sentence as relaychat/wire/nicknames.py (and the terminal program's sentence). */
export const NICK_RE = /^[A-Za-z][A-Za-z0-9_-]{1,23}$/;
export const NICK_RULE = "nicknames are 2 to 24 letters, digits, '_' or '-', starting with a letter";
export const MAX_WHO_LINES = 10000; // what a relay can make us hold for one WHO
const SID = /^[0-9a-f]{16}$/;
const UINT = /^(0|[1-9][0-9]{0,15})$/;

export function isNickname(text) {
  return NICK_RE.test(text);
}

export function nickProblem(text) {
  return isNickname(text) ? null : `'${text}' is not a nickname: ${NICK_RULE}.`;
}

export class RelayError extends Error {
  constructor(command, code, text) {
    super(`The relay refused ${command}: ${text} (${code}).`);
    Object.assign(this, { command, code, text });
  }
}

export class Disconnected extends Error {
  constructor(code, text) {
    super(`Disconnected from the relay: ${text}.`);
    Object.assign(this, { code, text });
  }
}

export class ProtocolViolation extends Error {}

export class RelayConnection {
  /** `send(line)` writes one line (no LF); `events` gets {type, ...} objects for relay events. */
  constructor(send, events) {
    this._send = send;
    this._events = events;
    this._pending = [];
    this._who = [];
    this.closed = null;
    this.hello = null;
  }

  _request(command, ...args) {
    if (this.closed) return Promise.reject(this.closed);
    const line = [command, ...args].join(' ');
    return new Promise((resolve, reject) => {
      this._pending.push({ command, resolve, reject });
      this._send(line);
    });
  }

  /** One line from the relay (without LF). Throws ProtocolViolation for nonsense: the caller hangs up. */
  receiveLine(line) {
    if (line.includes('\0')) throw new ProtocolViolation('NUL in a line');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const space = line.indexOf(' ');
    const head = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    const tokens = rest ? rest.split(' ') : [];
    switch (head) {
      case 'OK':
      case 'ERR':
        return this._reply(head, tokens, rest);
      case 'USER':
        if (tokens.length !== 2 || !isNickname(tokens[0])) throw new ProtocolViolation('bad USER line');
        if (this._who.length >= MAX_WHO_LINES) throw new ProtocolViolation('too many USER lines');
        this._who.push({ nick: tokens[0], identityPub: b64decode(tokens[1], { size: 32 }) });
        return;
      case 'OFFERED':
        if (tokens.length !== 3 || !SID.test(tokens[0]) || !isNickname(tokens[1])) throw new ProtocolViolation('bad OFFERED');
        return this._events({ type: 'offered', sid: tokens[0], nick: tokens[1], identityPub: b64decode(tokens[2], { size: 32 }) });
      case 'ACCEPTED':
        if (tokens.length !== 1 || !SID.test(tokens[0])) throw new ProtocolViolation('bad ACCEPTED');
        return this._events({ type: 'accepted', sid: tokens[0] });
      case 'CLOSED':
        if (tokens.length < 2 || !SID.test(tokens[0])) throw new ProtocolViolation('bad CLOSED');
        return this._events({ type: 'closed', sid: tokens[0], reason: tokens.slice(1).join(' ') });
      case 'FRAME':
        if (tokens.length !== 2 || !SID.test(tokens[0])) throw new ProtocolViolation('bad FRAME');
        return this._events({ type: 'frame', sid: tokens[0], payload: b64decode(tokens[1], { maxSize: this.hello?.maxFrame ?? 32768 }) });
      case 'MAIL':
        if (tokens.length !== 4 || !UINT.test(tokens[0]) || !isNickname(tokens[1]) || !UINT.test(tokens[2]))
          throw new ProtocolViolation('bad MAIL');
        return this._events({
          type: 'mail', mailId: tokens[0], sender: tokens[1], time: Number(tokens[2]),
          payload: b64decode(tokens[3], { maxSize: this.hello?.maxMail ?? 16384 }),
        });
      case 'NOTICE':
        return this._events({ type: 'notice', text: rest });
      case 'BYE': {
        const code = tokens[0] ?? '-';
        this.lost(new Disconnected(code, tokens.slice(1).join(' ') || code));
        return;
      }
      default:
        throw new ProtocolViolation(`unknown event ${head.slice(0, 20)}`);
    }
  }

  _reply(kind, tokens, rest) {
    const command = tokens[0];
    if (command === 'FRAME' && kind === 'ERR') {
      // ERR FRAME <code> <sid> <text>: not a reply to a queued request
      return this._events({ type: 'frame-error', sid: tokens[2], error: new RelayError('FRAME', tokens[1], tokens.slice(2).join(' ')) });
    }
    if (command === 'FRAME') return;
    const request = this._pending.shift();
    if (!request) throw new ProtocolViolation('a reply nobody asked for');
    if (request.command !== command && command !== '-') throw new ProtocolViolation(`reply to ${command}, expected ${request.command}`);
    if (kind === 'ERR') {
      this._who = [];
      request.reject(new RelayError(request.command, tokens[1] ?? 'internal', tokens.slice(2).join(' ')));
      return;
    }
    const result = tokens.slice(1);
    if (command === 'WHO') {
      const users = this._who;
      this._who = [];
      return request.resolve({ users, shown: Number(result[0]), online: Number(result[1]) });
    }
    request.resolve(result);
  }

  /** The connection ended: every pending request fails with `error`. */
  lost(error) {
    if (this.closed) return;
    this.closed = error;
    for (const request of this._pending.splice(0)) request.reject(error);
    this._events({ type: 'disconnected', error });
  }

  async sayHello() {
    const [version, serverId, ...params] = await this._request('HELLO', VERSION);
    if (version !== VERSION) throw new ProtocolViolation('relay chose a version we did not offer');
    const info = { serverId: b64decode(serverId, { size: 32 }), maxLine: 65536, maxFrame: 32768, maxMail: 16384 };
    for (const p of params) {
      const [k, v] = p.split('=');
      if (UINT.test(v ?? '')) {
        if (k === 'max_line') info.maxLine = Number(v);
        if (k === 'max_frame') info.maxFrame = Number(v);
        if (k === 'max_mail') info.maxMail = Number(v);
      }
    }
    this.hello = info;
    return info;
  }

  /**
   * REGISTER then PROVE. `solvePow(challenge, bits)` may be async (a Web
   * Worker); more than MAX_POW_BITS is refused before any work.
   */
  async register(identity, nick, solvePow) {
    const [canonical, challengeB64, bitsText] = await this._request(
      'REGISTER', nick, b64encode(identity.identityPublic), b64encode(identity.staticPublic), b64encode(identity.staticSig));
    const challenge = b64decode(challengeB64, { size: 32 });
    const bits = Number(bitsText);
    if (!UINT.test(bitsText) || canonical !== nick.toLowerCase()) throw new ProtocolViolation('bad REGISTER reply');
    if (bits > MAX_POW_BITS)
      throw new RelayError('REGISTER', 'too-much-work', `the relay asks for ${bits} bits of proof of work and this client does at most ${MAX_POW_BITS}`);
    const signature = await identity.signRegistration(this.hello.serverId, challenge, canonical);
    const nonce = bits ? await solvePow(challenge, bits) : null;
    const args = [b64encode(signature)];
    if (nonce) args.push(b64encode(nonce));
    const [shown, status, pending] = await this._request('PROVE', ...args);
    return { nick: shown, canonical, status, pendingMail: Number(pending) };
  }

  who() {
    return this._request('WHO');
  }

  async lookup(nick) {
    const [shown, identityPub, staticPub, staticSig, online] = await this._request('LOOKUP', nick);
    return {
      nick: shown, identityPub: b64decode(identityPub, { size: 32 }), staticPub: b64decode(staticPub, { size: 32 }),
      staticSig: b64decode(staticSig, { size: 64 }), online: online === 'online',
    };
  }

  async offer(nick) {
    const [sid, shown] = await this._request('OFFER', nick);
    if (!SID.test(sid)) throw new ProtocolViolation('bad session id');
    return { sid, nick: shown };
  }

  accept(sid) {
    return this._request('ACCEPT', sid);
  }

  decline(sid) {
    return this._request('DECLINE', sid);
  }

  close(sid) {
    return this._request('CLOSE', sid);
  }

  /** No reply on success (section 7); failures arrive as 'frame-error' events. */
  frame(sid, payload) {
    if (this.closed) throw this.closed;
    this._send(`FRAME ${sid} ${b64encode(payload)}`);
  }

  async mail(nick, payload) {
    const [mailId] = await this._request('MAIL', nick, b64encode(payload));
    return mailId;
  }

  ack(mailId) {
    return this._request('ACK', mailId);
  }

  ping(token) {
    return token ? this._request('PING', token) : this._request('PING');
  }

  quit() {
    return this._request('QUIT').catch(() => null);
  }
}
