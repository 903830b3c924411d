// A JS peer for the cross-language tests (tests/test_web_protocol.py): one
// JSON request per stdin line, one JSON answer per stdout line, bytes as hex.
// It holds one identity, one Channel and one SmpRunner at a time.
import { createInterface } from 'node:readline';
import { fromHex, hex } from '../static/bytes.js';
import * as channelModule from '../static/channel.js';
import { Channel, fixedPin } from '../static/channel.js';
import * as identityModule from '../static/identity.js';
import * as mailModule from '../static/mail.js';
import * as relayModule from '../static/relay.js';
import * as clientModule from '../static/client.js';
import { renderInert } from '../static/inert.js';
import { nickProblem } from '../static/relay.js';
import { Identity, WebCryptoIdentity, solvePow, verifyBinding } from '../static/identity.js';
import { PATTERNS } from '../static/noise.js';
import { openMail, seal } from '../static/mail.js';
import { fingerprint, safetyNumber } from '../static/safety.js';
import { SmpRunner } from '../static/smprun.js';
import { normalizeUserSecret } from '../static/smp.js';

let identity = null;
let channel = null;
const smp = new SmpRunner();

function event(e) {
  const out = { type: e.type };
  if (e.payload) out.payload = hex(e.payload);
  if (e.body) out.body = hex(e.body);
  for (const k of ['text', 'safetyNumber', 'peerFingerprint', 'reason', 'clean', 'pin', 'equal']) if (k in e) out[k] = e[k];
  if (e.peerIdentity) out.peerIdentity = hex(e.peerIdentity);
  if (e.error) out.kind = e.error.kind;
  return out;
}

const text = (bytes) => new TextDecoder().decode(bytes);
const ops = {
  constants: () => ({
    NICK_RULE: relayModule.NICK_RULE, NICK_RE: relayModule.NICK_RE.source,
    STATIC_CONTEXT: text(identityModule.STATIC_CONTEXT), REGISTER_CONTEXT: text(identityModule.REGISTER_CONTEXT),
    POW_CONTEXT: text(identityModule.POW_CONTEXT), MAX_POW_BITS: identityModule.MAX_POW_BITS,
    E2E_PROTOCOL: channelModule.PROTOCOL_NAME, E2E_PROLOGUE: text(channelModule.PROLOGUE_CONTEXT), REKEY_INTERVAL: channelModule.REKEY_INTERVAL,
    MAIL_PROTOCOL: mailModule.PROTOCOL_NAME, MAIL_PROLOGUE: text(mailModule.PROLOGUE_CONTEXT),
    MAX_UNANSWERED_OFFERS: clientModule.MAX_UNANSWERED_OFFERS, MAIL_HORIZON: clientModule.MAIL_HORIZON,
  }),
  patterns: () => ({ patterns: PATTERNS }),
  normalize: ({ texts }) => ({ normalized: texts.map(normalizeUserSecret) }),
  inert: ({ texts }) => ({ shown: texts.map((t) => renderInert(t)) }),
  nick: ({ names }) => ({ problems: names.map(nickProblem) }),
  identity({ identity: i, static: s }) {
    identity = new Identity(fromHex(i), fromHex(s));
    return { identityPub: hex(identity.identityPublic), staticPub: hex(identity.staticPublic), staticSig: hex(identity.staticSig), binding: hex(identity.binding()) };
  },
  sign_registration: async ({ serverId, challenge, nick }) => ({ sig: hex(await identity.signRegistration(fromHex(serverId), fromHex(challenge), nick)) }),
  async webcrypto_identity() {
    identity = await WebCryptoIdentity.generate();
    return { identityPub: hex(identity.identityPublic), staticPub: hex(identity.staticPublic), staticSig: hex(identity.staticSig) };
  },
  safety: ({ a, an, b, bn }) => ({ number: safetyNumber(fromHex(a), an, fromHex(b), bn) }),
  fingerprint: ({ key }) => ({ fingerprint: fingerprint(fromHex(key)) }),
  verify_binding: ({ binding, rs }) => {
    try {
      return { identityPub: hex(verifyBinding(fromHex(binding), fromHex(rs))) };
    } catch (e) {
      return { error: e.message };
    }
  },
  pow: ({ challenge, bits }) => ({ nonce: hex(solvePow(fromHex(challenge), bits)) }),
  channel({ initiator, sid, local, peer, pin }) {
    channel = new Channel({ initiator, sid, localNick: local, peerNick: peer, identity, pins: fixedPin(pin ? fromHex(pin) : null) });
    return { frames: channel.start().map(hex) };
  },
  frame: ({ payload }) => ({ events: channel.receiveFrame(fromHex(payload)).map(event) }),
  send: ({ text }) => ({ payload: hex(channel.sendText(text)) }),
  close: () => ({ payload: hex(channel.close() ?? new Uint8Array(0)) }),
  smp({ method, secret, body, peer }) {
    const args = method === 'receive' ? [fromHex(body), peer] : method === 'abort' ? [] : [channel.smpValue(secret)];
    const { bodies, events } = smp[method]('c', ...args);
    return { frames: bodies.map((b) => hex(channel.sendSmp(b))), events };
  },
  seal: ({ sender, recipient, staticPub, text, time, maxMail }) =>
    ({ payload: hex(seal(identity, sender, recipient, fromHex(staticPub), text, time, maxMail)) }),
  open({ sender, recipient, payload }) {
    try {
      const m = openMail(identity, sender, recipient, fromHex(payload));
      return { identityPub: hex(m.identityPub), time: m.time, messageId: hex(m.messageId), text: m.text };
    } catch (e) {
      return { error: e.message };
    }
  },
};

for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    const request = JSON.parse(line);
    answer = await ops[request.op](request);
  } catch (e) {
    answer = { exception: String(e && e.stack) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
