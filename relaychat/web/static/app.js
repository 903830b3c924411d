// The page: DOM and WebSocket around the DOM-free modules. Everything that
// came from the network reaches the document only as text nodes (after
// renderInert), inside <bdi> elements; nothing is ever parsed as HTML.
import { ChatClient, SeenMail } from './client.js';
import { ReceiptOutbox, SentMail } from './mailreceipts.js';
import { Identity, WebCryptoIdentity, makeIdentity } from './identity.js';
import { renderInert } from './inert.js';
import { KnownPeers } from './pins.js';
import { KnownRelays, relayAddress } from './knownrelays.js';
import { Disconnected, nickProblem } from './relay.js';
import { fingerprint } from './safety.js';
import * as store from './storage.js';
import { startVerifiedWorker } from './workerload.js';

const $ = (id) => document.getElementById(id);
const RETRY = [1, 2, 4, 8, 15, 30]; // seconds between reconnection attempts
const WHO_EVERY = 15000;
const PING_EVERY = 240000; // the relay's idle limit is 600 s
// What the network can make the page hold: lines kept per conversation (the
// terminal keeps 5000 rows), entries in the mail list, ended conversations listed.
const MAX_LINES = 2000;
const MAX_MAIL_ITEMS = 500;
const MAX_ENDED = 50;

// -- the worker (proof of work, SMP) ------------------------------------------------

// Started from integrity-checked code only (workerload.js): a worker file that
// differs from its hash in the import map never runs, and nothing that needs
// the worker (proof of work at sign-in, the secret check) goes ahead.
const importMap = JSON.parse(document.querySelector('script[type="importmap"]').textContent);
const workerReady = startVerifiedWorker(new URL('worker.js', import.meta.url).href, importMap, document.baseURI);
workerReady.then((worker) => {
  worker.onmessage = ({ data }) => {
    const job = waiting.get(data.id);
    waiting.delete(data.id);
    if (data.error !== undefined) job.reject(new Error(data.error));
    else job.resolve(data.result);
  };
}, () => null); // the start below reports the failure and stops the page
const waiting = new Map();
let nextJob = 0;
function work(message) {
  return workerReady.then((worker) => new Promise((resolve, reject) => {
    const id = ++nextJob;
    waiting.set(id, { resolve, reject });
    worker.postMessage({ id, ...message });
  }));
}
const smp = Object.fromEntries(['start', 'respond', 'abort', 'receive', 'drop'].map(
  (method) => [method, (...args) => work({ op: 'smp', method, args })]));
const solvePow = (challenge, bits) => work({ op: 'pow', challenge, bits });

// -- small DOM helpers: text only -----------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child); // strings become text nodes
  return node;
}
/** Untrusted text: inert, in a text node, bidi-isolated. */
const untrusted = (text, cls = '', multiline = false) => el('bdi', { class: cls, dir: 'auto' }, renderInert(String(text), { multiline }));

function setStatus(text, lost = false) {
  $('status').textContent = text;
  $('status').classList.toggle('lost', lost);
}

// -- state ------------------------------------------------------------------------------

const state = {
  nick: null, identity: null, client: null, ws: null, wsUrl: null, pins: null, relays: null, seen: null, sentMail: null, receiptsOwed: null,
  conversations: new Map(), // sid -> {nick, items: [li], open, ended, safety, peerFp, peerIdentity, smpMode}
  current: null, retry: 0, timers: [], stopped: false,
};

function conversation(sid, nick) {
  let c = state.conversations.get(sid);
  if (!c) {
    c = { sid, nick, items: [], open: false, ended: false, safety: '', peerFp: '', peerIdentity: null, smpMode: 'start',
      sent: new Map() }; // message number -> our line, until the peer's receipt marks it delivered
    state.conversations.set(sid, c);
    renderConversationList();
  }
  return c;
}

function line(c, node) {
  c.items.push(node);
  if (state.current === c.sid) $('messages').append(node), node.scrollIntoView?.({ block: 'nearest' });
  for (const old of c.items.splice(0, c.items.length - MAX_LINES)) {
    old.remove(); // the oldest lines go, from the page too
    for (const [number, item] of c.sent) if (item === old) c.sent.delete(number);
  }
}
/** An entry in the mail list; past MAX_MAIL_ITEMS the oldest goes. */
function mailItem(node) {
  $('mail').append(node);
  while ($('mail').children.length > MAX_MAIL_ITEMS) $('mail').firstElementChild.remove();
}
/** Ended conversations beyond MAX_ENDED are forgotten, the oldest first (never the one in front). */
function forgetEnded() {
  const ended = [...state.conversations.values()].filter((c) => c.ended && c.sid !== state.current);
  for (const c of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) state.conversations.delete(c.sid);
}
const system = (c, text, cls = 'system') => line(c, el('li', { class: cls }, untrusted(text, '', true)));

function renderConversationList() {
  const items = [...state.conversations.values()].map((c) => el('li', {},
    el('button', {
      type: 'button', 'aria-label': `Conversation with ${c.nick}`, 'aria-pressed': String(state.current === c.sid),
      onclick: () => select(c.sid),
    }, untrusted(c.nick), c.ended ? ' (ended)' : c.open ? '' : ' (connecting)')));
  $('conversations').replaceChildren(...items);
}

function select(sid) {
  state.current = sid;
  const c = state.conversations.get(sid);
  $('conversation').hidden = !c;
  renderConversationList();
  if (!c) return;
  $('conversation').setAttribute('aria-label', `Conversation with ${c.nick}`);
  $('conversation-title').replaceChildren('Conversation with ', untrusted(c.nick));
  $('messages').replaceChildren(...c.items);
  renderTrust(c);
  $('compose').disabled = !c.open || c.ended;
  $('send').disabled = !c.open || c.ended;
  $('compose').focus();
}

function renderTrust(c) {
  $('safety').textContent = c.safety || '(not known yet)';
  $('my-fp').textContent = state.identity ? myFingerprint() : '';
  $('peer-fp-label').replaceChildren(untrusted(c.nick), "'s fingerprint");
  $('peer-fp').textContent = c.peerFp;
  const verified = c.peerIdentity && state.client?.verified(c.nick, c.peerIdentity);
  $('verified').textContent = verified ? `Verified: this is the key you checked for ${c.nick}.` : `Not verified: compare the safety number with ${c.nick}.`;
  $('verified').className = verified ? 'yes' : 'no';
  $('mark-verified').disabled = !c.open || c.ended;
  $('smp-open').disabled = !c.open || c.ended;
}
function myFingerprint() {
  return fingerprint(state.identity.identityPublic);
}

// -- events from the client ---------------------------------------------------------------

function onEvent(e) {
  const c = e.sid ? state.conversations.get(e.sid) : null;
  switch (e.type) {
    case 'calling': {
      const conv = conversation(e.sid, e.nick);
      system(conv, `Calling ${e.nick}…`);
      select(e.sid);
      break;
    }
    case 'handshake':
      system(conversation(e.sid, e.nick), `Setting up an encrypted conversation with ${e.nick}…`);
      break;
    case 'open': {
      const conv = conversation(e.sid, e.nick);
      Object.assign(conv, { open: true, safety: e.safetyNumber, peerFp: e.peerFingerprint, peerIdentity: e.peerIdentity });
      system(conv, e.pin === 'new'
        ? `The conversation with ${e.nick} is encrypted. First contact: their key is now remembered; compare the safety number to be sure it is them.`
        : `The conversation with ${e.nick} is encrypted; their key is the one remembered.`);
      renderConversationList();
      if (state.current === e.sid || state.current === null) select(e.sid);
      else renderTrust(conv);
      break;
    }
    case 'message':
      if (c) line(c, el('li', {}, untrusted(e.nick, 'from'), ': ', untrusted(e.text, 'text', true)));
      break;
    case 'delivered':
      for (const { number } of c ? e.messages : []) {
        const item = c.sent.get(number);
        c.sent.delete(number);
        item?.append(' ', el('span', { class: 'delivered', role: 'note', 'aria-label': `delivered to ${e.nick}` }, '\u2713 delivered'));
      }
      break;
    case 'ended':
      if (c) {
        c.ended = true;
        system(c, e.reason, e.clean ? 'system' : 'problem');
        unconfirmed(c, e);
        forgetEnded();
        renderConversationList();
        if (state.current === e.sid) select(e.sid);
      }
      break;
    case 'failed': {
      const conv = conversation(e.sid, e.nick);
      conv.ended = true;
      system(conv, e.reason, 'problem');
      unconfirmed(conv, e);
      forgetEnded();
      renderConversationList();
      if (state.current === e.sid) select(e.sid);
      if (e.keyChanged) keyChanged(e.nick, e.newKey, e.reason);
      break;
    }
    case 'warning':
      if (c) system(c, e.reason, 'problem');
      break;
    case 'offered':
      addOffer(e);
      break;
    case 'offer-withdrawn':
      document.querySelector(`[data-offer="${e.sid}"]`)?.remove();
      break;
    case 'smp-requested':
      if (c) {
        c.smpMode = 'answer';
        system(c, `${c.nick} asks for a secret check: choose "Check a shared secret" and type the answer you agreed on.`);
        openSmp(c, `${c.nick} asks for a secret check. Type the answer you both agreed on (it is never sent).`);
      }
      break;
    case 'smp-result':
      if (c) {
        c.smpMode = 'start';
        system(c, e.reason, e.equal ? 'system' : 'problem');
        $('smp-status').textContent = e.reason;
        renderTrust(c);
      }
      break;
    case 'smp-aborted':
      if (c) {
        c.smpMode = 'start';
        system(c, e.reason, 'problem');
        $('smp-status').textContent = e.reason;
      }
      break;
    case 'mail':
      mailItem(el('li', {}, 'Mail from ', untrusted(e.nick, 'from'), ` (${new Date(e.time * 1000).toLocaleString()}): `,
        untrusted(e.text, 'text', true)));
      break;
    case 'mail-read':
      mailItem(el('li', { class: 'system' }, untrusted(e.nick, 'from'), ` read your mail (${new Date(e.readTime * 1000).toLocaleString()}): \u201c`,
        untrusted(e.words, 'text'), '\u201d'));
      break;
    case 'mail-problem':
      mailItem(el('li', { class: 'problem' }, untrusted(e.reason, '', true)));
      if (e.error?.kind === 'KeyChanged') keyChanged(e.nick, e.error.newKey, e.reason);
      break;
    case 'disconnected':
      $('offers').replaceChildren(); // calls waiting on that connection are gone with it
      $('people').replaceChildren();
      break;
    case 'notice':
      mailItem(el('li', { class: 'system' }, 'Notice from the relay: ', untrusted(e.text)));
      break;
  }
}

/** Section 11: an ending names our messages the peer never confirmed, by their first words. */
function unconfirmed(c, e) {
  if (!e.unconfirmedCount) return;
  system(c, `${e.nick} never confirmed ${e.unconfirmedCount} of your messages; they may not have arrived:`, 'problem');
  for (const words of e.unconfirmed) system(c, `    \u201c${words}\u201d`, 'problem');
  if (e.unconfirmedCount > e.unconfirmed.length) system(c, `    and ${e.unconfirmedCount - e.unconfirmed.length} earlier ones`, 'problem');
  for (const item of c.sent.values()) item.append(' ', el('span', { class: 'unconfirmed' }, '(not confirmed)'));
  c.sent.clear();
}

function addOffer(e) {
  const warn = e.pin === 'changed' ? ' WARNING: this is not the key remembered for them.' : '';
  const item = el('li', { 'data-offer': e.sid },
    untrusted(e.shown, 'from'), ` is calling (key ${e.fingerprint}).${warn} `,
    el('button', { type: 'button', 'aria-label': `Accept call from ${e.nick}`, onclick: () => answer(e, true, item) }, 'Accept'), ' ',
    el('button', { type: 'button', 'aria-label': `Decline call from ${e.nick}`, onclick: () => answer(e, false, item) }, 'Decline'));
  $('offers').append(item);
}

async function answer(e, accept, item) {
  item.remove();
  try {
    if (!accept) return await state.client.declineOffer(e.sid);
    conversation(e.sid, e.nick);
    select(e.sid);
    await state.client.acceptOffer(e.sid);
  } catch (error) {
    system(conversation(e.sid, e.nick), error.message, 'problem');
  }
}

function keyChanged(nick, newKey, warning) {
  const dialog = $('key-dialog');
  $('key-warning').replaceChildren(untrusted(warning));
  dialog.returnValue = '';
  dialog.onclose = () => {
    if (dialog.returnValue === 'accept' && newKey) {
      state.client.acceptNewKey(nick, newKey);
      setStatus(`You accepted ${nick}'s new key. It is not verified yet.`);
    }
  };
  if (!dialog.open) dialog.showModal();
  $('key-keep').focus();
}

function openSmp(c, explain) {
  $('smp-explain').replaceChildren(untrusted(explain));
  $('smp-go').textContent = c.smpMode === 'answer' ? 'Answer' : 'Start check';
  $('smp-status').textContent = '';
  $('smp-secret').value = '';
  state.smpSid = c.sid;
  if (!$('smp-dialog').open) $('smp-dialog').showModal();
  $('smp-secret').focus();
}

// -- the relay connection ------------------------------------------------------------------

async function relayUrl() {
  const response = await fetch('relay.json', { cache: 'no-store' });
  const { websocket } = await response.json();
  const url = new URL(websocket, location.href);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  return url.href;
}

function connect() {
  if (state.stopped) return;
  setStatus('Connecting to the relay…');
  const ws = new WebSocket(state.wsUrl, 'relaychat');
  state.ws = ws;
  const client = new ChatClient({
    identity: state.identity, knownPeers: state.pins, seenMail: state.seen, smp, onEvent,
    sentMail: state.sentMail, receiptsOwed: state.receiptsOwed, knownRelays: state.relays, relayAddress: relayAddress(state.wsUrl),
    send: (line) => ws.readyState === WebSocket.OPEN && ws.send(line),
  });
  let registered = false;
  let bye = null;
  state.client = client;
  ws.onmessage = ({ data }) => {
    if (typeof data !== 'string') return ws.close(4000, 'binary message');
    try {
      if (data.startsWith('BYE ')) bye = data.split(' ')[1];
      client.relay.receiveLine(data);
    } catch {
      ws.close(4000, 'protocol violation');
    }
  };
  ws.onopen = async () => {
    try {
      setStatus(`Signing in as ${state.nick}… (proof of work may take a moment)`);
      const reg = await client.login(state.nick, solvePow);
      registered = true;
      state.retry = 0;
      state.nick = reg.nick;
      setStatus(`Connected to the relay as ${reg.nick}.`);
      $('login').hidden = true;
      $('app').hidden = false;
      refreshWho();
    } catch (error) {
      if (client.relay.closed) return;
      if (error.code === 'relay-changed') {
        state.stopped = true; // no reconnecting into it: only the person decides (section 13)
        showRelayChanged(error);
      } else if (['taken', 'bad-nick', 'banned', 'too-much-work', 'relays-full'].includes(error.code)) {
        state.stopped = true;
        showLogin(error.message);
      } else {
        setStatus(error.message, true);
      }
      ws.close();
    }
  };
  ws.onclose = () => {
    client.relay.lost(new Disconnected('lost', 'the connection closed'));
    if (state.ws !== ws) return;
    if (bye === 'replaced') {
      state.stopped = true;
      return setStatus('You signed in somewhere else with this nickname; this page stopped. Reload it to continue here.', true);
    }
    if (state.stopped) return;
    const wait = RETRY[Math.min(state.retry++, RETRY.length - 1)];
    setStatus(`${registered ? 'The connection to the relay was lost.' : 'Cannot reach the relay.'} Reconnecting in ${wait} s…`, true);
    setTimeout(connect, wait * 1000);
  };
}

async function refreshWho() {
  const client = state.client;
  if (!client || client.relay.closed || !client.canonical) return;
  try {
    const users = await client.who();
    $('people').replaceChildren(...users.map((u) => el('li', {},
      untrusted(u.nick, 'from'), ' ',
      el('button', { type: 'button', 'aria-label': `Call ${u.nick}`, onclick: () => call(u.nick) }, 'Call'))));
    if (!users.length) $('people').append(el('li', { class: 'system' }, 'Nobody else is online.'));
  } catch {
    /* the connection is going; the status line says so */
  }
}

async function call(nick) {
  const problem = nickProblem(nick);
  if (problem) return setStatus(problem, true);
  try {
    await state.client.call(nick);
  } catch (error) {
    setStatus(error.message, true);
  }
}

// -- sign-in --------------------------------------------------------------------------------

function showLogin(error = '') {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = error;
  $('nick').focus();
}

/** The relay's id changed at this address: say so as loudly as a key change; go on only if the person accepts it. */
function showRelayChanged(error) {
  showLogin(error.message);
  setStatus('Not signed in: the relay has a different identity than before.', true);
  $('accept-relay')?.remove();
  const accept = el('button', { type: 'button', id: 'accept-relay', 'aria-label': "Accept the relay's new identity" },
    "I asked the relay's operator: accept its new identity");
  accept.addEventListener('click', () => {
    state.relays.replace(error.address, error.newId);
    state.pins.carryOver(error.knownId, error.newId); // the same relay, rebuilt: its users' keys are still checked
    accept.remove();
    $('login-error').textContent = '';
    state.stopped = false;
    connect();
  });
  $('login-error').after(accept);
}

async function start(nick, identity) {
  state.nick = nick;
  state.identity = identity;
  state.stopped = false;
  state.pins = new KnownPeers((await store.get('pins')) ?? [], (records) => store.put('pins', records));
  state.relays = new KnownRelays((await store.get('relays')) ?? [], (records) => store.put('relays', records));
  state.seen = new SeenMail((await store.get('seen')) ?? [], (records) => store.put('seen', records));
  state.sentMail = new SentMail((await store.get('sent-mail')) ?? [], (records) => store.put('sent-mail', records));
  state.receiptsOwed = new ReceiptOutbox((await store.get('mail-receipts')) ?? [], (records) => store.put('mail-receipts', records));
  state.wsUrl ??= await relayUrl();
  connect();
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const nick = $('nick').value.trim();
  const problem = nickProblem(nick);
  if (problem) return void ($('login-error').textContent = problem);
  const passphrase = $('passphrase').value;
  $('login-error').textContent = '';
  try {
    const profile = await store.get('profile');
    let identity;
    let keys = profile?.keys;
    if (profile) {
      identity = await loadIdentity(keys, passphrase);
    } else if (passphrase) {
      setStatus('Making your key in this browser…');
      identity = Identity.generate(); // raw bytes, sealed under the passphrase
      keys = await store.sealSecrets(identity.secrets(), passphrase);
    } else {
      setStatus('Making your key in this browser…');
      identity = await makeIdentity(); // the identity key non-extractable where WebCrypto can
      keys = identity instanceof WebCryptoIdentity ? { webcrypto: identity.record() } : await store.sealSecrets(identity.secrets(), '');
    }
    await store.put('profile', { nick, keys });
    $('passphrase').value = '';
    await start(nick, identity);
  } catch (error) {
    $('login-error').textContent = error.message;
  }
});

$('reach-form').addEventListener('submit', (event) => {
  event.preventDefault();
  call($('peer').value.trim());
});
$('refresh').addEventListener('click', refreshWho);

$('write').addEventListener('click', () => {
  const nick = $('peer').value.trim();
  const problem = nickProblem(nick);
  if (problem) return setStatus(problem, true);
  $('mail-title').replaceChildren('Mail to ', untrusted(nick));
  $('mail-error').textContent = '';
  $('mail-dialog').dataset.nick = nick;
  $('mail-dialog').showModal();
  $('mail-text').focus();
});
$('mail-form').addEventListener('submit', async (event) => {
  if (event.submitter?.value !== 'send') return;
  event.preventDefault();
  const nick = $('mail-dialog').dataset.nick;
  try {
    await state.client.sendMail(nick, $('mail-text').value);
    mailItem(el('li', { class: 'system' }, 'Mail to ', untrusted(nick, 'from'), ' sent, sealed for them alone.'));
    $('mail-text').value = '';
    $('mail-dialog').close();
  } catch (error) {
    $('mail-error').textContent = error.message;
  }
});

$('compose').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('compose-form').requestSubmit();
  }
});
$('compose-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const c = state.conversations.get(state.current);
  const text = $('compose').value;
  if (!c || !text) return;
  try {
    const number = state.client.send(c.sid, text);
    const item = el('li', { class: 'mine' }, untrusted(state.nick, 'from'), ': ', untrusted(text, 'text', true));
    c.sent.set(number, item);
    line(c, item);
    $('compose').value = '';
  } catch (error) {
    system(c, error.message, 'problem');
  }
});
$('hangup').addEventListener('click', () => {
  const c = state.conversations.get(state.current);
  if (c && !c.ended) state.client.hangUp(c.sid);
});
$('mark-verified').addEventListener('click', () => {
  const c = state.conversations.get(state.current);
  if (!c) return;
  state.client.markVerified(c.sid);
  system(c, `You marked ${c.nick}'s key as verified: the safety numbers match.`);
  renderTrust(c);
});
$('smp-open').addEventListener('click', () => {
  const c = state.conversations.get(state.current);
  if (c) openSmp(c, c.smpMode === 'answer'
    ? `${c.nick} asks for a secret check. Type the answer you both agreed on (it is never sent).`
    : `Type an answer only you and ${c.nick} know (agree on the question first). It is never sent; each side learns only whether both typed the same.`);
});
$('smp-form').addEventListener('submit', async (event) => {
  const c = state.conversations.get(state.smpSid);
  if (!c) return;
  if (event.submitter?.value !== 'go') {
    if (c.smpMode === 'answer') {
      c.smpMode = 'start';
      state.client.smpAbort(c.sid).catch(() => null);
    }
    return;
  }
  event.preventDefault();
  const secret = $('smp-secret').value;
  $('smp-secret').value = '';
  try {
    $('smp-status').textContent = 'Checking…';
    if (c.smpMode === 'answer') {
      c.smpMode = 'busy';
      await state.client.smpRespond(c.sid, secret);
    } else {
      await state.client.smpStart(c.sid, secret);
    }
  } catch (error) {
    $('smp-status').textContent = error.message;
  }
});

setInterval(refreshWho, WHO_EVERY);
setInterval(() => state.client?.canonical && !state.client.relay.closed && state.client.relay.ping().catch(() => null), PING_EVERY);

/** The stored keys: a WebCrypto record, or raw secrets (in the clear or sealed under the passphrase). */
async function loadIdentity(keys, passphrase) {
  if (keys.webcrypto) return WebCryptoIdentity.load(keys.webcrypto);
  const secrets = await store.openSecrets(keys, passphrase);
  return new Identity(secrets.identity, secrets.static);
}

// First visit: the sign-in form. Later: straight in, unless the key is under a passphrase.
(async () => {
  try {
    await workerReady;
  } catch (error) {
    state.stopped = true;
    return setStatus(`Stopped: this page's code does not match its integrity hashes (${error.message}). Do not sign in here.`, true);
  }
  try {
    const profile = await store.get('profile');
    if (!profile) return showLogin();
    $('nick').value = profile.nick;
    if (!profile.keys.clear && !profile.keys.webcrypto) return showLogin(''); // under a passphrase
    await start(profile.nick, await loadIdentity(profile.keys));
  } catch (error) {
    showLogin(error.message);
  }
})();
