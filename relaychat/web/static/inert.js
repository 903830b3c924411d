// Text from the network made inert (docs/protocol.rst section 16), the
// rules of relaychat/chat/inert.py: C0/C1 controls and DEL as \xNN,
// format characters (bidi overrides and isolates, zero-width and tag
// characters; not ZWJ/ZWNJ) as \uXXXX, lone surrogates escaped, at most
// MAX_MARKS combining marks per base. The page then puts the result in a
// text node inside a <bdi>: never HTML, and isolated from the text around.
export const MAX_MARKS = 8;
const DANGEROUS = /^(?:\p{Cc}|\p{Cs}|(?![\u200c\u200d])\p{Cf}|[\u2028\u2029])$/u;
const MARK = /^[\p{Mn}\p{Me}]$/u;

function escape(ch) {
  const code = ch.codePointAt(0);
  if (code < 0x100) return '\\x' + code.toString(16).padStart(2, '0');
  if (code < 0x10000) return '\\u' + code.toString(16).padStart(4, '0');
  return '\\U' + code.toString(16).padStart(8, '0');
}

/** With `multiline`, LF, CR LF, U+2028 and U+2029 become "\n"; otherwise no control character survives. */
export function renderInert(text, { multiline = false } = {}) {
  if (typeof text !== 'string') throw new TypeError('renderInert() takes text');
  const out = [];
  let marks = 0;
  const chars = Array.from(text); // code points; a lone surrogate stays one element
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (multiline && (ch === '\n' || ch === '\u2028' || ch === '\u2029')) {
      out.push('\n');
      marks = 0;
    } else if (multiline && ch === '\r' && chars[i + 1] === '\n') {
      out.push('\n');
      i++;
      marks = 0;
    } else if (DANGEROUS.test(ch)) {
      out.push(escape(ch));
      marks = 0;
    } else if (MARK.test(ch)) {
      marks++;
      out.push(marks <= MAX_MARKS ? ch : escape(ch));
    } else {
      marks = 0;
      out.push(ch);
    }
  }
  return out.join('');
}
