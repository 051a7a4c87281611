"""Envelopes from `UID FETCH (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)])` answers.

The sync asks for the raw header lines rather than the server's ENVELOPE structure: servers mangle
or choke on exactly the headers we must survive (pymap drops the connection on an unparseable
Date and turns 8-bit bytes into U+FFFD), while the raw bytes let us decode RFC 2047 words, guess
the charset of 8-bit headers and tolerate a missing or broken Date ourselves. Nothing here raises
on odd input: a header that cannot be made sense of is stored as well as it can be, or empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header
from email.utils import getaddresses, parsedate_to_datetime

HEADER_FIELDS = ("MESSAGE-ID", "SUBJECT", "FROM", "TO", "DATE")
FETCH_ITEMS = f"(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})])"

MESSAGE_ID_MAX = 998  # MailboxMessage.message_id max_length (RFC 5322 line limit)

_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_FOLD = re.compile(rb"\r?\n[ \t]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# One plain address, `Name <local@domain>` or `local@domain`: by far the common case, parsed
# without the email package's general (and slow) address parser.
_ADDR = r"[^<>\s,;:\"()]+@[^<>\s,;:\"()]+"
_SIMPLE_ADDRESS = re.compile(rf"(?:([^\"<>,;:()\\@=]*?)\s*<({_ADDR})>|({_ADDR}))")


@dataclass(frozen=True)
class Envelope:
    uid: int
    message_id: str = ""
    subject: str = ""
    from_address: str = ""
    to_addresses: str = ""
    date: datetime | None = None
    flags: list[str] = field(default_factory=list)
    size: int = 0


def parse_fetch_response(data: list) -> list[Envelope]:
    """Envelopes from imaplib's answer to a UID FETCH of FETCH_ITEMS.

    imaplib gives one `(text up to the literal, literal)` tuple per message whose header block came
    as a literal, followed by the bytes after it (`b")"`, or items the server put after the
    literal). A message answered without a literal (an empty header block sent as `""` or NIL) is
    one bytes element. Unsolicited FETCH lines without a UID (flag changes) are skipped.
    """
    envelopes: list[Envelope] = []
    meta = b""
    headers: bytes | None = None
    for item in data:
        if isinstance(item, tuple):
            if headers is not None:  # a second literal in one message: not ours, keep the first
                meta += item[0]
                continue
            meta, headers = item[0], item[1]
            continue
        if item is None:
            continue
        meta += item
        if headers is None and b"BODY[" not in meta:
            meta = b""  # an unsolicited FETCH (e.g. "5 (FLAGS (\\Seen))")
            continue
        envelope = _envelope(meta, headers or b"")
        if envelope is not None:
            envelopes.append(envelope)
        meta, headers = b"", None
    return envelopes


def _envelope(meta: bytes, raw_headers: bytes) -> Envelope | None:
    uid = _UID.search(meta)
    if uid is None:
        return None
    size = _SIZE.search(meta)
    flags = _FLAGS.search(meta)
    headers = parse_headers(raw_headers)
    return Envelope(
        uid=int(uid.group(1)),
        message_id=_clean(_text(headers.get(b"message-id", b"")))[:MESSAGE_ID_MAX],
        subject=_clean(decode_words(_text(headers.get(b"subject", b"")))),
        from_address=format_addresses(_text(headers.get(b"from", b"")), first_only=True),
        to_addresses=format_addresses(_text(headers.get(b"to", b""))),
        date=parse_date(_text(headers.get(b"date", b""))),
        flags=_text(flags.group(1)).split() if flags else [],
        size=int(size.group(1)) if size else 0,
    )


def parse_headers(raw: bytes) -> dict[bytes, bytes]:
    """Header name (lower case) → raw value, unfolded; the first occurrence wins."""
    headers: dict[bytes, bytes] = {}
    for line in _FOLD.sub(b" ", raw).split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def _text(raw: bytes) -> str:
    """Header bytes as text. RFC 5322 says ASCII; real mail also carries raw UTF-8 (RFC 6532) and
    legacy 8-bit charsets, for which Latin-1 is the guess that never fails."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; control characters in a subject are noise.
    if text.isprintable():
        return text.strip()
    return _CONTROL.sub("", text).strip()


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; an unknown charset or bad encoding degrades, never fails."""
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except Exception:  # malformed encoded words: keep the raw text
        return value
    out = []
    for part, charset in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            out.append(part.decode(charset or "ascii"))
        except (LookupError, UnicodeDecodeError):
            out.append(part.decode("utf-8", "replace"))
    return "".join(out)


def format_addresses(value: str, *, first_only: bool = False) -> str:
    """`Name <addr>, addr` with display names decoded. Parsed before decoding, so a decoded name
    holding a comma cannot split an address."""
    if not value:
        return ""
    simple = _SIMPLE_ADDRESS.fullmatch(value)
    if simple:
        name, addr = (simple.group(1) or "").strip(), simple.group(2) or simple.group(3)
        return f"{name} <{addr}>" if name else addr
    try:
        pairs = getaddresses([value])
    except Exception:
        return _clean(decode_words(value))
    formatted = []
    for name, addr in pairs:
        if not name and not addr:
            continue
        name = _clean(decode_words(name))
        # An encoded word where an address belongs ("From: =?UTF-8?Q?Jane?=") is a name.
        addr = _clean(addr if "@" in addr else decode_words(addr))
        formatted.append(f"{name} <{addr}>" if name and addr else name or addr)
        if first_only:
            break
    return ", ".join(formatted)


def parse_date(value: str) -> datetime | None:
    """The Date header as an aware datetime; None when missing or unparseable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if parsed is None:
        return None
    # "-0000" (no zone information) parses as naive: RFC 5322 says it is UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
