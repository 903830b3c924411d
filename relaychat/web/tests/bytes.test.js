import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64decode, b64encode, EncodingError } from '../static/bytes.js';
import { RelayConnection, nickProblem } from '../static/relay.js';

test('strict base64: padding, alphabet and unused bits', () => {
  for (let n = 0; n < 10; n++) {
    const data = new Uint8Array(n).map((_, i) => i * 37);
    assert.deepEqual(b64decode(b64encode(data)), data);
    assert.equal(b64encode(data), Buffer.from(data).toString('base64'));
  }
  for (const bad of ['AA', 'AB==', 'A===', 'AA=A', '-_==', 'AAA ', 'QQ==\n']) assert.throws(() => b64decode(bad), EncodingError, bad);
  assert.throws(() => b64decode('AAAA', { size: 2 }), EncodingError);
});

test('relay lines: replies matched in order, hostile lines refused', async () => {
  const sent = [];
  const events = [];
  const relay = new RelayConnection((l) => sent.push(l), (e) => events.push(e));
  const ping = relay.ping('x');
  relay.receiveLine('NOTICE hi <b>there</b>');
  relay.receiveLine('OK PING x');
  assert.deepEqual(await ping, ['x']);
  assert.equal(events[0].text, 'hi <b>there</b>');
  assert.throws(() => relay.receiveLine('OK PING y'), /nobody asked/);
  assert.throws(() => relay.receiveLine('FRAME 0123 AAAA'));
  assert.throws(() => relay.receiveLine('FRAME 0123456789abcdef A==='));
  assert.equal(nickProblem('1abc'), "'1abc' is not a nickname: nicknames are 2 to 24 letters, digits, '_' or '-', starting with a letter.");
});
