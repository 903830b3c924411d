// ChatClient's goodbye with receipts (section 11): after our CLOSE it reads the peer's
// receipts for a bounded time, then CLOSEs the session at the relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64decode } from '../static/bytes.js';
import { Channel, fixedPin } from '../static/channel.js';
import { ChatClient, SeenMail } from '../static/client.js';
import { Identity } from '../static/identity.js';
import { KnownPeers } from '../static/pins.js';

const SID = '0123456789abcdef';

function setUp() {
  const lines = [], events = [], timers = [];
  const client = new ChatClient({
    identity: Identity.generate(), knownPeers: new KnownPeers(), seenMail: new SeenMail(), smp: {},
    send: (l) => lines.push(l), onEvent: (e) => events.push(e),
    setTimer: (f) => timers.push(f) - 1, clearTimer: (t) => (timers[t] = null),
  });
  Object.assign(client, { serverId: new Uint8Array(32), canonical: 'alice', nick: 'alice', maxFrame: 32768, maxMail: 16384 });
  const mine = client._channel(SID, 'bob', true);
  const peer = new Channel({ initiator: false, sid: SID, localNick: 'bob', peerNick: 'alice', identity: Identity.generate(), pins: fixedPin() });
  peer.start();
  const [m2] = peer.receiveFrame(mine.start()[0]);
  const m3 = mine.receiveFrame(m2.payload).find((e) => e.type === 'send');
  peer.receiveFrame(m3.payload);
  const frames = () => lines.splice(0).map((l) => l.split(' ')).filter((t) => t[0] === 'FRAME').map((t) => b64decode(t[2]));
  return { client, peer, lines, events, timers, frames };
}

const tick = () => new Promise((r) => setImmediate(r));

test('hangUp waits for the receipt, shows the mark, then closes at the relay', async () => {
  const { client, peer, lines, events, frames } = setUp();
  assert.equal(client.send(SID, 'hello there'), 1);
  const [text] = frames();
  const [, receipt] = peer.receiveFrame(text);
  const done = client.hangUp(SID);
  const [bye] = frames();
  assert.ok(bye);
  await tick();
  assert.deepEqual(lines, []); // no CLOSE to the relay while a receipt is awaited
  client.relay.receiveLine(`FRAME ${SID} ${Buffer.from(receipt.payload).toString('base64')}`);
  assert.deepEqual(events.find((e) => e.type === 'delivered').messages, [{ number: 1, words: 'hello there' }]);
  await tick();
  assert.deepEqual(lines, [`CLOSE ${SID}`]);
  client.relay.receiveLine(`OK CLOSE ${SID}`);
  await done;
  const ended = events.find((e) => e.type === 'ended');
  assert.equal(ended.clean, true);
  assert.equal(ended.unconfirmedCount, 0);
});

test('no receipt in time: the ending names the message by its first words', async () => {
  const { client, lines, events, timers, frames } = setUp();
  client.send(SID, 'never   confirmed');
  frames();
  const done = client.hangUp(SID);
  await tick();
  assert.deepEqual(lines.filter((l) => l.startsWith('CLOSE')), []);
  timers.find(Boolean)(); // CLOSE_LINGER passes
  await tick();
  assert.deepEqual(lines.filter((l) => l.startsWith('CLOSE')), [`CLOSE ${SID}`]);
  client.relay.receiveLine(`OK CLOSE ${SID}`);
  await done;
  const ended = events.find((e) => e.type === 'ended');
  assert.deepEqual([ended.unconfirmed, ended.unconfirmedCount], [['never confirmed'], 1]);
});

test("the relay's CLOSED while waiting ends the wait and no CLOSE follows", async () => {
  const { client, lines, events, frames } = setUp();
  client.send(SID, 'cut off');
  frames();
  const done = client.hangUp(SID);
  await tick();
  client.relay.receiveLine(`CLOSED ${SID} gone`);
  await done;
  assert.deepEqual(lines.filter((l) => l.startsWith('CLOSE ')), []);
  assert.deepEqual(events.filter((e) => e.type === 'ended').map((e) => e.unconfirmed), [['cut off']]);
});
