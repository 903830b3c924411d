// A person's session with one relay, without DOM: conversations, offers,
// sealed mail and pins, the JS counterpart of relaychat/client/chat_client.py's
// ChatClient. Everything the UI must show comes out of `onEvent` as plain
// objects whose texts are sentences (to be shown inert, never as HTML).
import { b64encode, fromHex } from './bytes.js';
import { Channel, ChannelState, ConversationError, PinStatus, keyChanged, maxTextBytes } from './channel.js';
import { verifyStaticSig } from './identity.js';
import { MESSAGE_ID_SIZE, MailError, maxTextBytes as maxMailText, openMail, seal, sealReceipt } from './mail.js';
import { ReceiptOutbox, SentMail } from './mailreceipts.js';
import { firstWords } from './receipts.js';
import { RelayConnection, isNickname } from './relay.js';
import { PinsFull } from './pins.js';
import { KnownRelays } from './knownrelays.js';
import { fingerprint } from './safety.js';
import { randomBytes } from './vendor/node_modules/@noble/hashes/utils.js';

export const MAX_UNANSWERED_OFFERS = 100; // as relaychat/client/chat_client.py
export const CLOSE_LINGER = 2000; // ms hangUp() waits for receipts of our TEXTs (the reference client: 2 s)

/** What an ending tells about our TEXTs the peer never confirmed (named by first words). */
function unconfirmedOf(channel) {
  return { unconfirmed: channel.unconfirmed.map(([, words]) => words), unconfirmedCount: channel.unconfirmedCount };
}

export const MAIL_HORIZON = 90 * 24 * 3600; // seconds: older seals are refused (section 12)
export const MAIL_SKEW = 24 * 3600; // seconds: seals further ahead are refused (their ids would never age out)
export const MAX_SEEN_MAIL = 20000; // ids kept in this browser (relaychat/client/seen.py keeps 100,000)

/** Message ids of shown mail, across restarts (the page persists `records()`). */
/**
 * Ids of mail already shown (section 12), as relaychat/client/seen.py: ids
 * sealed before MAIL_HORIZON age out, mail sealed earlier (or more than
 * MAIL_SKEW ahead) is refused, and past MAX_SEEN_MAIL ids the oldest are
 * dropped while `horizon` rises to the newest time dropped: mail sealed at
 * or before it is refused, so nothing forgotten can be shown twice.
 * Saved as [{id, time}] plus one {horizon} record.
 */
export class SeenMail {
  constructor(records = [], save = () => {}) {
    this._ids = new Map();
    this.horizon = 0;
    for (const r of records) {
      if (r.horizon !== undefined) this.horizon = Math.max(this.horizon, Number(r.horizon) || 0);
      else this._ids.set(r.id, r.time);
    }
    this._save = save;
    this.limit = MAX_SEEN_MAIL;
  }
  has(id) {
    return this._ids.has(b64encode(id));
  }
  tooOld(time, now) {
    return time <= this.horizon || time < now - MAIL_HORIZON || time > now + MAIL_SKEW;
  }
  add(id, time, now) {
    for (const [k, t] of this._ids) if (t < now - MAIL_HORIZON) this._ids.delete(k);
    this._ids.set(b64encode(id), time);
    if (this._ids.size > this.limit) {
      const oldest = [...this._ids].sort((a, b) => a[1] - b[1]).slice(0, this._ids.size - this.limit);
      for (const [k, t] of oldest) {
        this._ids.delete(k);
        this.horizon = Math.max(this.horizon, t);
      }
    }
    this._save(this.records());
  }
  records() {
    const records = [...this._ids].map(([id, time]) => ({ id, time }));
    return this.horizon ? [...records, { horizon: this.horizon }] : records;
  }
}

export class ChatClient {
  /**
   * `send(line)` writes to the relay; `smp` runs SMP (smprun.js methods,
   * possibly through a worker: each returns a Promise of {bodies, events});
   * `onEvent(e)` receives everything to show; `now()` gives Unix seconds;
   * `knownRelays` remembers the relay id of `relayAddress` (section 13).
   */
  constructor({ identity, knownPeers, seenMail, send, smp, onEvent, now = () => Math.floor(Date.now() / 1000),
    setTimer = (f, ms) => setTimeout(f, ms), clearTimer = (t) => clearTimeout(t),
    sentMail = new SentMail(), receiptsOwed = new ReceiptOutbox(), knownRelays = new KnownRelays(), relayAddress = 'relay' }) {
    Object.assign(this, { identity, knownPeers, seenMail, smp, onEvent, now, setTimer, clearTimer, sentMail, receiptsOwed,
      knownRelays, relayAddress });
    this._flushing = false;
    this._lingering = new Map(); // sid -> done(relayGone): our CLOSE is out, receipts awaited
    this.relay = new RelayConnection(send, (e) => this._relayEvent(e));
    this.sessions = new Map(); // sid -> Channel (ours, including pending calls)
    this.offers = new Map(); // sid -> {nick, identityPub}
    this.nick = null;
    this.canonical = null;
    this.serverId = null;
  }

  async login(nick, solvePow) {
    const hello = await this.relay.sayHello();
    // Before anything is keyed by it: a relay with another id at a known address
    // would make every pin a first contact (RelayChanged; nothing is registered).
    this.knownRelays.admit(this.relayAddress, hello.serverId);
    this.serverId = hello.serverId;
    this.maxFrame = hello.maxFrame;
    this.maxMail = hello.maxMail;
    const reg = await this.relay.register(this.identity, nick, solvePow);
    this.nick = reg.nick;
    this.canonical = reg.canonical;
    this.sendReceipts(); // those a refused or lost MAIL left owed (section 12)
    return reg;
  }

  _emit(event) {
    this.onEvent(event);
  }

  // -- directory -------------------------------------------------------------

  async who() {
    const { users } = await this.relay.who();
    return users.filter((u) => u.nick.toLowerCase() !== this.canonical).map((u) => ({ ...u, fingerprint: fingerprint(u.identityPub) }));
  }

  async lookup(nick) {
    const r = await this.relay.lookup(nick);
    const canonical = r.nick.toLowerCase();
    let certified = false;
    try {
      certified = verifyStaticSig(r.identityPub, r.staticPub, r.staticSig);
    } catch {
      certified = false;
    }
    if (!certified)
      throw new ConversationError('UncertifiedKeys', `The relay gave keys for ${canonical} that ${canonical}'s identity key does not certify; someone may be tampering.`);
    return { ...r, nick: canonical, pin: this.knownPeers.check(this.serverId, canonical, r.identityPub) };
  }

  verified(nick, identityPub) {
    return this.knownPeers.verified(this.serverId, nick, identityPub);
  }

  // -- conversations -----------------------------------------------------------

  _channel(sid, peerNick, initiator) {
    const channel = new Channel({
      initiator, sid, localNick: this.canonical, peerNick, identity: this.identity,
      pins: this.knownPeers.source(this.serverId, peerNick), maxFrame: this.maxFrame,
    });
    this.sessions.set(sid, channel);
    return channel;
  }

  /** Offer a conversation; the handshake starts when the relay says ACCEPTED. */
  async call(nick) {
    if (!isNickname(nick)) throw new Error(`'${nick}' is not a nickname.`);
    const { sid, nick: shown } = await this.relay.offer(nick);
    const channel = this._channel(sid, shown.toLowerCase(), true);
    this._emit({ type: 'calling', sid, nick: channel.peerNick });
    return sid;
  }

  async acceptOffer(sid) {
    const offer = this.offers.get(sid);
    if (!offer) throw new Error('That call is no longer offered.');
    this.offers.delete(sid);
    const channel = this._channel(sid, offer.nick, false);
    channel.start();
    try {
      await this.relay.accept(sid);
    } catch (e) {
      this.sessions.delete(sid);
      throw e;
    }
    this._emit({ type: 'handshake', sid, nick: channel.peerNick });
  }

  async declineOffer(sid) {
    this.offers.delete(sid);
    await this.relay.decline(sid).catch(() => null);
  }

  /** Sends `text`; returns its number, which a later 'delivered' event names once the peer confirms it. */
  send(sid, text) {
    const channel = this.sessions.get(sid);
    if (!channel) throw new ConversationError('ConversationClosed', 'That conversation is over.');
    for (const frame of channel.sendTextFrames(text)) this.relay.frame(sid, frame);
    return channel.lastTextNumber;
  }

  maxText(sid) {
    return maxTextBytes(this.sessions.get(sid)?.maxFrame ?? this.maxFrame);
  }

  /**
   * Our goodbye: the encrypted CLOSE; then, while TEXTs are unconfirmed, read on for
   * their receipts for at most CLOSE_LINGER ms (section 11); then CLOSE to the relay,
   * unless its CLOSED came first.
   */
  async hangUp(sid) {
    const channel = this.sessions.get(sid);
    if (!channel || this._lingering.has(sid)) return;
    const frame = channel.close();
    if (frame) this.relay.frame(sid, frame);
    this.smp.drop?.(sid);
    let relayGone = false;
    if (channel.state === ChannelState.CLOSING) {
      relayGone = await new Promise((resolve) => {
        const timer = this.setTimer(() => done(false), CLOSE_LINGER);
        const done = (gone) => {
          this.clearTimer(timer);
          this._lingering.delete(sid);
          resolve(gone);
        };
        this._lingering.set(sid, done);
      });
      channel.stopWaiting();
    }
    this.sessions.delete(sid);
    if (!relayGone) await this.relay.close(sid).catch(() => null);
    this._emit({ type: 'ended', sid, nick: channel.peerNick, clean: true, reason: `You ended the conversation with ${channel.peerNick}.`,
      ...unconfirmedOf(channel) });
  }

  acceptNewKey(nick, identityPub) {
    this.knownPeers.replace(this.serverId, nick, identityPub);
  }

  /** The user verified this conversation's key: `how` is 'number' (safety number compared) or 'smp'. */
  markVerified(sid, how = 'number') {
    const c = this.sessions.get(sid);
    if (c?.peerIdentity) this.knownPeers.markVerified(this.serverId, c.peerNick, c.peerIdentity, how, this.now());
  }

  // -- SMP -----------------------------------------------------------------------

  async _smpDo(sid, method, ...args) {
    const channel = this.sessions.get(sid);
    if (!channel) return;
    const { bodies, events } = await this.smp[method](sid, ...args);
    for (const body of bodies) {
      if (channel.state !== ChannelState.OPEN) return;
      this.relay.frame(sid, channel.sendSmp(body));
    }
    for (const e of events) {
      if (e.type === 'smp-result' && e.equal) this.markVerified(sid, 'smp');
      this._emit({ ...e, sid, nick: channel.peerNick });
    }
  }

  smpStart(sid, secret) {
    const channel = this.sessions.get(sid);
    return this._smpDo(sid, 'start', channel.smpValue(secret), channel.initiator);
  }

  smpRespond(sid, secret) {
    const channel = this.sessions.get(sid);
    return this._smpDo(sid, 'respond', channel.smpValue(secret));
  }

  smpAbort(sid) {
    return this._smpDo(sid, 'abort');
  }

  // -- mail ------------------------------------------------------------------------

  async sendMail(nick, text) {
    const limit = maxMailText(this.maxMail);
    if (new TextEncoder().encode(text).length > limit) throw new MailError(`A mail is at most ${limit} bytes of text.`);
    const peer = await this.lookup(nick);
    if (peer.pin === PinStatus.CHANGED) throw keyChanged(peer.nick, this.knownPeers.get(this.serverId, peer.nick), peer.identityPub);
    if (peer.pin === PinStatus.NEW) this.knownPeers.pin(this.serverId, peer.nick, peer.identityPub);
    const messageId = randomBytes(MESSAGE_ID_SIZE);
    const payload = seal(this.identity, this.canonical, peer.nick, peer.staticPub, text, this.now(), this.maxMail, messageId);
    const stored = await this.relay.mail(peer.nick, payload);
    this.sentMail.add(messageId, this.serverId, peer.nick, firstWords(text), this.now()); // its read receipt is awaited
    return stored;
  }

  /** Send every read receipt owed on this relay, one at a time; a failed one stays owed for the next login. */
  async sendReceipts() {
    if (this._flushing) return;
    this._flushing = true;
    const tried = new Set();
    try {
      for (;;) {
        const one = this.receiptsOwed.pending(this.serverId).find((o) => !tried.has(`${o.nick} ${o.id}`));
        if (!one) return;
        tried.add(`${one.nick} ${one.id}`);
        try {
          const peer = await this.lookup(one.nick);
          if (peer.pin !== PinStatus.MATCH) continue; // never to a changed key; we only owe pinned senders
          const payload = sealReceipt(this.identity, this.canonical, peer.nick, peer.staticPub, fromHex(one.id), this.now());
          await this.relay.mail(peer.nick, payload);
          this.receiptsOwed.done(one, this.now());
        } catch {
          continue; // refused, disconnected, uncertified keys: still owed
        }
      }
    } finally {
      this._flushing = false;
    }
  }

  /** A read receipt: shown only if it names our mail to exactly this sender, on this relay. */
  _mailRead(mailId, nick, opened, status) {
    this.relay.ack(mailId).catch(() => null);
    const now = this.now();
    if (status === PinStatus.NEW || this.seenMail.has(opened.messageId) || this.seenMail.tooOld(opened.time, now)) return;
    this.seenMail.add(opened.messageId, opened.time, now);
    const sent = this.sentMail.take(opened.receiptFor, this.serverId, nick, now);
    if (sent) this._emit({ type: 'mail-read', nick, words: sent.words, sentTime: sent.time, readTime: opened.time });
  }

  _mail({ mailId, sender, time, payload }) {
    const nick = sender.toLowerCase();
    let opened;
    const problem = (error, ack = true) => {
      this._emit({ type: 'mail-problem', mailId, nick, time, reason: error.message, error });
      if (ack) this.relay.ack(mailId).catch(() => null);
    };
    try {
      opened = openMail(this.identity, nick, this.canonical, payload);
    } catch (e) {
      return problem(e instanceof MailError ? e : new MailError(String(e.message)));
    }
    const status = this.knownPeers.check(this.serverId, nick, opened.identityPub);
    if (status === PinStatus.CHANGED) return problem(keyChanged(nick, this.knownPeers.get(this.serverId, nick), opened.identityPub), false);
    if (opened.receiptFor) return this._mailRead(mailId, nick, opened, status);
    if (this.seenMail.has(opened.messageId)) return void this.relay.ack(mailId).catch(() => null);
    const now = this.now();
    if (this.seenMail.tooOld(opened.time, now))
      return problem(new MailError(`A mail from ${nick} was sealed too long ago (or too far ahead) to rule out a replay; it was dropped.`));
    if (status === PinStatus.NEW) {
      try {
        this.knownPeers.pin(this.serverId, nick, opened.identityPub);
      } catch (e) {
        if (e instanceof PinsFull) return problem(new MailError(`A mail from ${nick} is not shown: ${e.message}`), false); // kept on the relay
        throw e;
      }
    }
    this.seenMail.add(opened.messageId, opened.time, now);
    this._emit({
      type: 'mail', mailId, nick, time: opened.time, text: opened.text, fingerprint: fingerprint(opened.identityPub),
      verified: this.verified(nick, opened.identityPub),
    });
    this.relay.ack(mailId).catch(() => null);
    this.receiptsOwed.add(this.serverId, nick, opened.messageId, now);
    this.sendReceipts();
  }

  // -- relay events ------------------------------------------------------------------

  _relayEvent(e) {
    switch (e.type) {
      case 'offered': {
        if (this.sessions.has(e.sid) || this.offers.has(e.sid)) return;
        if (this.offers.size >= MAX_UNANSWERED_OFFERS) return void this.relay.decline(e.sid).catch(() => null);
        const nick = e.nick.toLowerCase();
        this.offers.set(e.sid, { nick, identityPub: e.identityPub });
        const pin = this.knownPeers.check(this.serverId, nick, e.identityPub);
        return this._emit({ type: 'offered', sid: e.sid, nick, shown: e.nick, pin, fingerprint: fingerprint(e.identityPub) });
      }
      case 'accepted': {
        const channel = this.sessions.get(e.sid);
        if (!channel || !channel.initiator || channel._started) return;
        for (const frame of channel.start()) this.relay.frame(e.sid, frame);
        return this._emit({ type: 'handshake', sid: e.sid, nick: channel.peerNick });
      }
      case 'closed': {
        if (this.offers.delete(e.sid)) return this._emit({ type: 'offer-withdrawn', sid: e.sid, reason: e.reason });
        const channel = this.sessions.get(e.sid);
        if (!channel) return;
        const lingering = this._lingering.get(e.sid);
        if (lingering) return void (channel.relayClosed(e.reason), lingering(true));
        this.sessions.delete(e.sid);
        this.smp.drop?.(e.sid);
        if (channel.state === ChannelState.HANDSHAKE && channel.initiator && !channel._started) {
          const why = e.reason === 'declined' ? `${channel.peerNick} declined the call.` : `The call to ${channel.peerNick} ended (${/^[a-z-]+$/.test(e.reason) ? e.reason : '?'}).`;
          return this._emit({ type: 'ended', sid: e.sid, nick: channel.peerNick, clean: false, reason: why });
        }
        return this._handle(channel, channel.relayClosed(e.reason));
      }
      case 'frame': {
        const channel = this.sessions.get(e.sid);
        if (!channel) return;
        this._handle(channel, channel.receiveFrame(e.payload));
        if (channel.state !== ChannelState.CLOSING) this._lingering.get(e.sid)?.(false);
        return;
      }
      case 'frame-error': {
        const channel = this.sessions.get(e.sid);
        if (channel) this._handle(channel, channel.fail(new ConversationError('MessageRejected', e.error.message)));
        return;
      }
      case 'mail':
        return this._mail(e);
      case 'notice':
        return this._emit({ type: 'notice', text: e.text });
      case 'disconnected':
        for (const [sid, channel] of this.sessions) {
          this.smp.drop?.(sid);
          const lingering = this._lingering.get(sid);
          if (lingering) { lingering(true); continue; } // hangUp() reports its own ending
          this._emit({ type: 'ended', sid, nick: channel.peerNick, clean: false, reason: `The connection to the relay was lost; the conversation with ${channel.peerNick} ended.`,
            ...unconfirmedOf(channel) });
        }
        this.sessions.clear();
        this.offers.clear();
        return this._emit({ type: 'disconnected', reason: e.error.message, code: e.error.code });
    }
  }

  _handle(channel, events) {
    const sid = channel.sid;
    for (const event of events) {
      switch (event.type) {
        case 'send':
          this.relay.frame(sid, event.payload);
          break;
        case 'open':
          if (event.pin === PinStatus.NEW) {
            try {
              this.knownPeers.pin(this.serverId, channel.peerNick, event.peerIdentity);
            } catch (e) {
              if (!(e instanceof PinsFull)) throw e;
              return this._handle(channel, channel.fail(new ConversationError('HandshakeFailed', `Cannot record ${channel.peerNick}'s key: ${e.message}`)));
            }
          }
          this._emit({ ...event, sid, nick: channel.peerNick, verified: this.verified(channel.peerNick, event.peerIdentity),
            myFingerprint: fingerprint(this.identity.identityPublic) });
          break;
        case 'message':
          this._emit({ type: 'message', sid, nick: channel.peerNick, text: event.text });
          break;
        case 'delivered':
          this._emit({ type: 'delivered', sid, nick: channel.peerNick, messages: event.messages });
          break;
        case 'smp':
          this._smpDo(sid, 'receive', event.body, channel.peerNick, channel.initiator).catch(() => null);
          break;
        case 'unknown':
          this._emit({ type: 'warning', sid, nick: channel.peerNick, reason: event.reason });
          break;
        case 'closed':
          this.sessions.delete(sid);
          this.smp.drop?.(sid);
          // Section 11: the receiver of a goodbye sends no CLOSE; the relay's CLOSED follows.
          this._emit({ type: 'ended', sid, nick: channel.peerNick, clean: event.clean, reason: event.reason, ...unconfirmedOf(channel) });
          break;
        case 'failed':
          this.sessions.delete(sid);
          this.smp.drop?.(sid);
          this.relay.close(sid).catch(() => null); // section 11: no encrypted CLOSE, but leave the session
          this._lingering.get(sid)?.(true); // the session is left already
          this._emit({
            type: 'failed', sid, nick: channel.peerNick, reason: event.reason, keyChanged: event.error.kind === 'KeyChanged',
            newKey: event.error.newKey ?? null, newFingerprint: event.error.newKey ? fingerprint(event.error.newKey) : null,
            ...unconfirmedOf(channel),
          });
          break;
      }
    }
  }
}
