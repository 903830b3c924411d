// Sealed offline mail (docs/protocol.rst section 12), a port of
// relaychat/client/mail.py: one Noise_X handshake message.
import { randomBytes } from './vendor/node_modules/@noble/hashes/utils.js';
import { concat, fromUtf8, lp, utf8 } from './bytes.js';
import { BINDING_SIZE, BindingError, KeyFormatError, checkStaticPublic, verifyBinding } from './identity.js';
import { HandshakeState, NoiseError } from './noise.js';

export const PROTOCOL_NAME = 'Noise_X_25519_ChaChaPoly_SHA256';
export const PROLOGUE_CONTEXT = utf8('relaychat-mail-v1');
export const MESSAGE_ID_SIZE = 16;
const TIME_SIZE = 8;
const HEADER_SIZE = BINDING_SIZE + TIME_SIZE + MESSAGE_ID_SIZE; // 121
const NOISE_OVERHEAD = 32 + 48 + 16;

export class MailError extends Error {}

export function prologue(senderNick, recipientNick) {
  return concat(PROLOGUE_CONTEXT, lp(utf8(senderNick)), lp(utf8(recipientNick)));
}

export function maxTextBytes(maxMail) {
  return maxMail - NOISE_OVERHEAD - HEADER_SIZE;
}

/** The MAIL payload for `text`; `recipientStatic` already checked (static_sig and pin). */
export function seal(identity, senderNick, recipientNick, recipientStatic, text, time, maxMail, messageId = null) {
  const body = utf8(text);
  if (body.length > maxTextBytes(maxMail)) throw new MailError(`A mail is at most ${maxTextBytes(maxMail)} bytes of text.`);
  try {
    checkStaticPublic(recipientStatic);
  } catch (e) {
    if (e instanceof KeyFormatError) throw new MailError(`Cannot seal a mail to ${recipientNick}: ${e.message}`);
    throw e;
  }
  messageId = messageId ?? randomBytes(MESSAGE_ID_SIZE);
  if (messageId.length !== MESSAGE_ID_SIZE || !Number.isSafeInteger(time) || time < 0) throw new RangeError('bad message id or time');
  const t = new Uint8Array(TIME_SIZE);
  new DataView(t.buffer).setBigUint64(0, BigInt(time));
  const hs = new HandshakeState(PROTOCOL_NAME, true, prologue(senderNick, recipientNick), { s: identity.staticPrivate, rs: recipientStatic });
  return hs.writeMessage(concat(identity.binding(), t, messageId, body));
}

/** {identityPub, time, messageId, text}; MailError (a sentence) if anything is wrong. */
export function openMail(identity, senderNick, recipientNick, sealed) {
  const hs = new HandshakeState(PROTOCOL_NAME, false, prologue(senderNick, recipientNick), { s: identity.staticPrivate });
  let payload;
  try {
    payload = hs.readMessage(sealed);
  } catch (e) {
    if (!(e instanceof NoiseError)) throw e;
    throw new MailError(`A mail said to be from ${senderNick} could not be opened: it was altered, is not ` +
      'sealed to you, or the relay named the wrong sender.');
  }
  if (payload.length < HEADER_SIZE) throw new MailError(`A mail from ${senderNick} is malformed.`);
  let identityPub;
  try {
    identityPub = verifyBinding(payload.slice(0, BINDING_SIZE), hs.remoteStatic);
  } catch (e) {
    if (!(e instanceof BindingError)) throw e;
    throw new MailError(`A mail said to be from ${senderNick} is not certified by them: ${e.message}`);
  }
  const rest = payload.subarray(BINDING_SIZE);
  const time = Number(new DataView(rest.buffer, rest.byteOffset).getBigUint64(0));
  const messageId = rest.slice(TIME_SIZE, TIME_SIZE + MESSAGE_ID_SIZE);
  let text;
  try {
    text = fromUtf8(rest.subarray(TIME_SIZE + MESSAGE_ID_SIZE));
  } catch {
    throw new MailError(`A mail from ${senderNick} is not UTF-8 text.`);
  }
  return { identityPub, time, messageId, text };
}
