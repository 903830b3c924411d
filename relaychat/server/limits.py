"""Every number a remote party could push on, in one place, with its default.

The defaults are documented in docs/protocol.rst and conf/relaychat.toml;
the config loader builds these objects from the ``[limits]``,
``[mailbox]`` and ``[nicknames]`` tables, so a new limit is one field here
and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaychat.crypto.identity import MAX_POW_BITS
from relaychat.wire.codec import encoded_length

FRAME_LINE_OVERHEAD = len("FRAME ") + 16 + 1
"""A FRAME line without its payload: the command, a session id, two spaces."""
MAIL_LINE_OVERHEAD = len("MAIL ") + 24 + 1
"""A MAIL command without its payload, for the longest nickname."""


@dataclass(frozen=True)
class Limits:
    max_line: int = 65536
    max_line_unregistered: int = 512
    max_output: int = 65536
    max_read: int = 262144
    output_timeout: float = 60.0
    max_frame: int = 32768
    max_sessions: int = 16
    max_pending_offers: int = 4
    offer_timeout: float = 60.0
    lines_per_second: float = 2000.0
    line_burst: int = 4000
    connections_per_address: int = 32
    max_connections: int = 20000
    registration_timeout: float = 30.0
    idle_timeout: float = 600.0
    close_timeout: float = 10.0
    max_violations: int = 10
    max_who: int = 1000
    pow_bits: int = 16

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_line < 1024:
            raise ValueError("max_line must be at least 1024")
        if not 256 <= self.max_line_unregistered <= self.max_line:
            raise ValueError("max_line_unregistered must be at least 256 (REGISTER needs about 220) and at most max_line")
        if self.max_output < 4096:
            raise ValueError("max_output must be at least 4096")
        if self.max_read < 4096:
            raise ValueError("max_read must be at least 4096")
        if self.max_frame < 64:
            raise ValueError("max_frame must be at least 64")
        frame_line = FRAME_LINE_OVERHEAD + encoded_length(self.max_frame)
        if self.max_line < frame_line:
            raise ValueError(
                f"max_line ({self.max_line}) cannot carry a FRAME of max_frame ({self.max_frame}) bytes: "
                f"such a line is {frame_line} bytes; raise max_line to at least {frame_line} or lower max_frame"
            )
        if self.pow_bits > MAX_POW_BITS:
            raise ValueError(f"pow_bits must be at most {MAX_POW_BITS}")
        if self.lines_per_second <= 0 or self.line_burst < 1:
            raise ValueError("lines_per_second and line_burst must be positive")


@dataclass(frozen=True)
class MailPolicy:
    max_mail: int = 16384
    mail_per_recipient: int = 100
    mail_bytes_per_recipient: int = 1 << 20
    mail_per_sender: int = 20
    mail_per_sender_per_hour: int = 100  # across all recipients
    mail_bytes_total: int = 256 << 20  # all mail the relay holds, for everyone
    mail_expiry_days: float = 30.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive")

    def check_fits(self, limits: Limits) -> None:
        """A MAIL of ``max_mail`` bytes must fit in a line of ``limits.max_line``."""
        mail_line = MAIL_LINE_OVERHEAD + encoded_length(self.max_mail)
        if limits.max_line < mail_line:
            raise ValueError(
                f"max_mail ({self.max_mail}) does not fit in max_line ({limits.max_line}): such a MAIL line is "
                f"{mail_line} bytes; raise limits.max_line to at least {mail_line} or lower max_mail"
            )

    @property
    def expiry_seconds(self) -> float:
        return self.mail_expiry_days * 86400.0


@dataclass(frozen=True)
class NicknamePolicy:
    """How many nicknames the relay binds, and for how long.

    ``nickname_expiry_days`` 0 keeps a binding for good. Otherwise a
    nickname nobody has logged in with for that many days is released,
    with the mail waiting for it: the relay's table stops growing with
    names abandoned long ago, but an expired nickname can then be claimed
    by another key, and contacts who had pinned the old key see a key
    change (which they must then check) rather than the old person.
    """

    max_nicknames: int = 100000
    registrations_per_address_per_hour: int = 20
    nickname_expiry_days: float = 0.0

    def __post_init__(self) -> None:
        if self.max_nicknames < 1 or self.registrations_per_address_per_hour < 1:
            raise ValueError("max_nicknames and registrations_per_address_per_hour must be positive")
        if self.nickname_expiry_days < 0:
            raise ValueError("nickname_expiry_days must not be negative (0: never)")

    @property
    def expiry_seconds(self) -> float:
        """0.0 when nicknames never expire."""
        return self.nickname_expiry_days * 86400.0
