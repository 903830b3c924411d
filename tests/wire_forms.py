"""Every line a relay may send, as the regular expression docs/protocol.rst
gives for it (section numbers below): what the property test of the hub
holds each of the hub's lines to. Written from the document, not from the
code, so a line the document does not describe fails."""

from __future__ import annotations

import re

INT = r"(?:0|[1-9][0-9]*)"  # 1: unsigned decimal ASCII without leading zeros
B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"  # 1: RFC 4648 with padding
B64_NONEMPTY = r"(?=[A-Za-z0-9+/])" + B64
NICK = r"[A-Za-z][A-Za-z0-9_-]{1,23}"  # 4
SID = r"[0-9a-f]{16}"  # 1
TEXT = r"[^\n\r]+"  # 1, 16: the rest of the line, for people (never empty: "-" stands for nothing)
TOKEN = r"[!-~]{1,64}"  # 6: a PING token
COMMAND = r"(?:-|HELLO|PING|QUIT|REGISTER|PROVE|LOOKUP|WHO|OFFER|ACCEPT|DECLINE|CLOSE|FRAME|MAIL|ACK|[A-Z]{1,16})"
CODE = (  # 2: the error codes
    r"(?:syntax|unknown|order|version|too-long|bad-encoding|too-big|bad-nick|bad-key|bad-signature|pow|"
    r"no-session|taken|no-such-user|no-such-mail|offline|invalid|limit|quota|banned|draining|internal|unavailable)"
)
BYE = r"(?:quit|timeout|idle|violations|busy|banned|kicked|replaced|draining|slow)"  # 2
CLOSED = r"(?:declined|closed|gone|timeout|kicked|draining)"  # 7

FORMS = {
    "OK HELLO": rf"OK HELLO 1 {B64_NONEMPTY} max_line={INT} max_frame={INT} max_mail={INT}(?: [a-z_]+=[!-~]+)*",
    "OK REGISTER": rf"OK REGISTER {NICK} {B64_NONEMPTY} {INT}",
    "OK PROVE": rf"OK PROVE {NICK} (?:new|known) {INT}",
    "OK LOOKUP": rf"OK LOOKUP {NICK} {B64_NONEMPTY} {B64_NONEMPTY} {B64_NONEMPTY} (?:online|offline)",
    "USER": rf"USER {NICK} {B64_NONEMPTY}",
    "OK WHO": rf"OK WHO {INT} {INT}",
    "OK PING": rf"OK PING(?: {TOKEN})?",
    "OK OFFER": rf"OK OFFER {SID} {NICK}",
    "OFFERED": rf"OFFERED {SID} {NICK} {B64_NONEMPTY}",
    "OK ACCEPT": rf"OK ACCEPT {SID}",
    "ACCEPTED": rf"ACCEPTED {SID}",
    "OK DECLINE": rf"OK DECLINE {SID}",
    "OK CLOSE": rf"OK CLOSE {SID}",
    "CLOSED": rf"CLOSED {SID} {CLOSED}",
    "FRAME": rf"FRAME {SID} {B64_NONEMPTY}",
    "OK MAIL": rf"OK MAIL {INT}",
    "MAIL": rf"MAIL {INT} {NICK} {INT} {B64_NONEMPTY}",
    "OK ACK": rf"OK ACK {INT}",
    "ERR": rf"ERR {COMMAND} {CODE} {TEXT}",
    "NOTICE": rf"NOTICE {TEXT}",
    "BYE": rf"BYE {BYE} {TEXT}",
}
_COMPILED = [re.compile(form) for form in FORMS.values()]


def documented(line: str) -> bool:
    """Is ``line`` (without its LF) one of the documented forms?"""
    return any(form.fullmatch(line) for form in _COMPILED)
