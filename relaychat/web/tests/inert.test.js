import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderInert } from '../static/inert.js';

test('controls, bidi overrides and tags are escaped; ZWJ kept; lines only when asked', () => {
  assert.equal(renderInert('a\x1b[2Jb\x7f\x9b'), 'a\\x1b[2Jb\\x7f\\x9b');
  assert.equal(renderInert('\u202eevil\u2066'), '\\u202eevil\\u2066');
  assert.equal(renderInert('\u{e0041}'), '\\U000e0041');
  assert.equal(renderInert('\u{1f468}\u200d\u{1f469}'), '\u{1f468}\u200d\u{1f469}');
  assert.equal(renderInert('one\r\ntwo\u2028three', { multiline: true }), 'one\ntwo\nthree');
  assert.equal(renderInert('one\ntwo'), 'one\\x0atwo');
  assert.equal(renderInert('\ud800x'), '\\ud800x');
  assert.equal(renderInert('e' + '\u0301'.repeat(10)), 'e' + '\u0301'.repeat(8) + '\\u0301\\u0301');
  assert.equal(renderInert('<b>&amp;</b>'), '<b>&amp;</b>'); // HTML is harmless text: shown as typed
});
