// One end-to-end conversation as a pure state machine (docs/protocol.rst
// sections 10, 11, 14): a port of relaychat/client/channel.py. Fed decoded
// FRAME payloads, it answers with events; {type: 'send', payload} must be
// put in FRAMEs in the order given (nonces are implicit).
//
// SMP bodies come out as {type: 'smp', body} and go in through sendSmp():
// the arithmetic (a few hundred ms) runs in smprun.js, in a Web Worker on
// the page, so the channel never blocks.
import { sha256 } from './vendor/node_modules/@noble/hashes/sha2.js';
import { concat, equal, fromUtf8, lp, utf8 } from './bytes.js';
import { BindingError, verifyBinding } from './identity.js';
import { DecryptError, HandshakeState, NoiseError } from './noise.js';
import { fingerprint, safetyNumber } from './safety.js';
import { smpSecret } from './smp.js';

export const PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256';
export const PROLOGUE_CONTEXT = utf8('relaychat-e2e-v1');
export const REKEY_INTERVAL = 1000;
export const DEFAULT_MAX_FRAME = 32768;
const TAG_SIZE = 16;
export const MessageType = Object.freeze({ TEXT: 1, CLOSE: 2, SMP: 3 });
export const ChannelState = Object.freeze({ HANDSHAKE: 'handshake', OPEN: 'open', ENDED: 'ended', FAILED: 'failed' });
export const PinStatus = Object.freeze({ NEW: 'new', MATCH: 'match', CHANGED: 'changed' });

/** Errors carry a sentence for people; `kind` names the Python class it mirrors. */
export class ConversationError extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    Object.assign(this, extra);
  }
}

export function keyChanged(nick, pinnedKey, newKey) {
  const old = pinnedKey ? fingerprint(pinnedKey) : '(unreadable pin)';
  return new ConversationError(
    'KeyChanged',
    `WARNING: ${nick}'s identity key has CHANGED (pinned ${old}, now ${fingerprint(newKey)}). ` +
      'Someone may be impersonating them; the conversation was stopped. ' +
      'Check the new key with them in person before accepting it.',
    { nick, pinnedKey, newKey },
  );
}

export function prologue(sid, initiatorNick, responderNick) {
  return concat(PROLOGUE_CONTEXT, lp(utf8(sid)), lp(utf8(initiatorNick)), lp(utf8(responderNick)));
}

export function maxTextBytes(maxFrame = DEFAULT_MAX_FRAME) {
  return maxFrame - TAG_SIZE - 1;
}

/** A pin given by value (null: first contact). `pins` objects answer check(key) and pinned(). */
export function fixedPin(key = null) {
  return {
    check: (identityPub) => (key === null ? PinStatus.NEW : equal(key, identityPub) ? PinStatus.MATCH : PinStatus.CHANGED),
    pinned: () => key,
  };
}

export class Channel {
  constructor({ initiator, sid, localNick, peerNick, identity, pins, maxFrame = DEFAULT_MAX_FRAME }) {
    for (const nick of [localNick, peerNick]) if (nick !== nick.toLowerCase()) throw new Error('nicknames must be canonical (lower-case)');
    Object.assign(this, { initiator, sid, localNick, peerNick, maxFrame });
    this._identity = identity;
    this._pins = pins;
    const names = initiator ? [localNick, peerNick] : [peerNick, localNick];
    this._handshake = new HandshakeState(PROTOCOL_NAME, initiator, prologue(sid, ...names), { s: identity.staticPrivate });
    this._send = null;
    this._recv = null;
    this.messagesSent = 0;
    this.messagesReceived = 0;
    this._started = false;
    this._answered = false;
    this._handshakeHash = null;
    this.state = ChannelState.HANDSHAKE;
    this.peerIdentity = null;
    this.safetyNumber = null;
    this.error = null;
  }

  /** Frames to send once the session is open: message 1 for the initiator. */
  start() {
    if (this._started) throw new Error('start() was already called');
    this._started = true;
    return this.initiator ? [this._handshake.writeMessage(new Uint8Array(0))] : [];
  }

  /** One decoded FRAME payload from the peer. Never throws for network input. */
  receiveFrame(payload) {
    if (this.state === ChannelState.FAILED || this.state === ChannelState.ENDED) return [];
    try {
      return this.state === ChannelState.HANDSHAKE ? this._handshakeStep(payload) : this._transport(payload);
    } catch (error) {
      if (error instanceof ConversationError) return this.fail(error);
      return this.fail(new ConversationError('MessageRejected',
        `An internal error occurred while reading a message from ${this.peerNick}; the conversation was stopped.`));
    }
  }

  _handshakeStep(message) {
    const hs = this._handshake;
    const peer = this.peerNick;
    if (!this._started) throw new ConversationError('HandshakeFailed', `${peer} sent data before the conversation was set up.`);
    let payload;
    try {
      payload = hs.readMessage(message);
    } catch (e) {
      if (e instanceof DecryptError)
        throw new ConversationError('HandshakeFailed', `A handshake message from ${peer} failed authentication: it was altered ` +
          'or belongs to another session (the relay may be tampering or splicing sessions).');
      if (e instanceof NoiseError) throw new ConversationError('HandshakeFailed', `${peer} sent a malformed handshake message.`);
      throw e;
    }
    if (!this.initiator && !this._answered) {
      if (payload.length) throw new ConversationError('HandshakeFailed', `${peer}'s first handshake message carried unexpected data.`);
      this._answered = true;
      return [{ type: 'send', payload: hs.writeMessage(this._identity.binding()) }];
    }
    const complete = this._checkBinding(payload, hs.remoteStatic);
    const events = [];
    if (this.initiator) events.push({ type: 'send', payload: hs.writeMessage(this._identity.binding()) });
    const [send, recv] = hs.cipherStates;
    this._send = send;
    this._recv = recv;
    this._handshakeHash = hs.handshakeHash;
    this._handshake = null;
    this.state = ChannelState.OPEN;
    return [...events, complete];
  }

  _checkBinding(binding, rs) {
    if (rs === null) throw new ConversationError('HandshakeFailed', `${this.peerNick} sent no static key.`);
    let identityPub;
    try {
      identityPub = verifyBinding(binding, rs);
    } catch (e) {
      if (e instanceof BindingError) throw new ConversationError('HandshakeFailed', `Cannot verify ${this.peerNick}: ${e.message}`);
      throw e;
    }
    const status = this._pins.check(identityPub);
    if (status === PinStatus.CHANGED) throw keyChanged(this.peerNick, this._pins.pinned(), identityPub);
    this.peerIdentity = identityPub;
    this.safetyNumber = safetyNumber(this._identity.identityPublic, this.localNick, identityPub, this.peerNick);
    return { type: 'open', peerIdentity: identityPub, peerFingerprint: fingerprint(identityPub), safetyNumber: this.safetyNumber, pin: status };
  }

  _transport(ciphertext) {
    let plaintext;
    try {
      plaintext = this._recv.decryptWithAd(new Uint8Array(0), ciphertext);
    } catch (e) {
      if (!(e instanceof NoiseError)) throw e;
      throw new ConversationError('MessageRejected', `A message from ${this.peerNick} failed authentication: it was altered, replayed ` +
        'or reordered, or one before it was lost. The conversation was stopped.');
    }
    this.messagesReceived += 1;
    if (this.messagesReceived % REKEY_INTERVAL === 0) this._recv.rekey();
    if (!plaintext.length) throw new ConversationError('MessageRejected', `${this.peerNick} sent an empty message, which the protocol forbids.`);
    const kind = plaintext[0];
    const body = plaintext.subarray(1);
    if (kind === MessageType.TEXT) {
      try {
        return [{ type: 'message', text: fromUtf8(body) }];
      } catch {
        throw new ConversationError('MessageRejected', `${this.peerNick} sent a message that is not UTF-8 text.`);
      }
    }
    if (kind === MessageType.CLOSE) {
      if (body.length) throw new ConversationError('MessageRejected', `${this.peerNick} sent a malformed goodbye.`);
      this._end();
      return [{ type: 'closed', clean: true, reason: `${this.peerNick} ended the conversation.` }];
    }
    if (kind === MessageType.SMP) return [{ type: 'smp', body: body.slice() }];
    return [{ type: 'unknown', kind, reason: `${this.peerNick} sent a message of unknown type 0x${kind.toString(16).padStart(2, '0')}; it was ignored.` }];
  }

  _encrypt(kind, body) {
    if (this.state !== ChannelState.OPEN) throw this._notOpen();
    const plaintext = concat(new Uint8Array([kind]), body);
    if (plaintext.length + TAG_SIZE > this.maxFrame)
      throw new ConversationError('MessageTooLong', `A message is at most ${maxTextBytes(this.maxFrame)} bytes.`);
    const ciphertext = this._send.encryptWithAd(new Uint8Array(0), plaintext);
    this.messagesSent += 1;
    if (this.messagesSent % REKEY_INTERVAL === 0) this._send.rekey();
    return ciphertext;
  }

  _notOpen() {
    const peer = this.peerNick;
    if (this.state === ChannelState.HANDSHAKE) return new ConversationError('ConversationClosed', `The conversation with ${peer} is not verified yet.`);
    if (this.error) return new ConversationError('ConversationClosed', `The conversation with ${peer} is over: ${this.error.message}`);
    return new ConversationError('ConversationClosed', `The conversation with ${peer} is over.`);
  }

  sendText(text) {
    return this._encrypt(MessageType.TEXT, utf8(text));
  }

  /** An SMP body (from smprun.js) as a FRAME payload. */
  sendSmp(body) {
    return this._encrypt(MessageType.SMP, body);
  }

  /** The 32-byte value SMP compares (14.3): bound to both identities and this handshake. */
  smpValue(secret) {
    if (this.state !== ChannelState.OPEN) throw this._notOpen();
    const mine = sha256(this._identity.identityPublic);
    const theirs = sha256(this.peerIdentity);
    const [first, second] = this.initiator ? [mine, theirs] : [theirs, mine];
    return smpSecret(first, second, this._handshakeHash, secret);
  }

  /** Our encrypted goodbye, or null when there is nothing to say. */
  close() {
    if (this.state !== ChannelState.OPEN) {
      if (this.state === ChannelState.HANDSHAKE)
        this.fail(new ConversationError('ConversationClosed', `The conversation with ${this.peerNick} was abandoned.`));
      return null;
    }
    const frame = this._encrypt(MessageType.CLOSE, new Uint8Array(0));
    this._end();
    return frame;
  }

  /** The relay said CLOSED <sid> <reason>; without the peer's CLOSE first, messages may be lost. */
  relayClosed(reason) {
    const shown = /^[A-Za-z0-9-]+$/.test(reason) ? reason : '?';
    if (this.state === ChannelState.HANDSHAKE)
      return this.fail(new ConversationError('HandshakeFailed', `The conversation with ${this.peerNick} ended before it was verified (the relay says: ${shown}).`));
    if (this.state === ChannelState.OPEN) {
      this._end();
      return [{ type: 'closed', clean: false, reason: `The conversation with ${this.peerNick} ended without their goodbye ` +
        `(the relay says: ${shown}); the last messages may have been lost.` }];
    }
    return [];
  }

  fail(error) {
    if (this.state === ChannelState.FAILED || this.state === ChannelState.ENDED) return [];
    this.state = ChannelState.FAILED;
    this.error = error;
    this._dropSecrets();
    return [{ type: 'failed', error, reason: error.message }];
  }

  _end() {
    this.state = ChannelState.ENDED;
    this._dropSecrets();
  }

  _dropSecrets() {
    this._handshake = null;
    this._send = null;
    this._recv = null;
  }

  toJSON() {
    return { sid: this.sid, peer: this.peerNick, state: this.state };
  }
}
