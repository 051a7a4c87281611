"""Secrets never leave the IMAP client, in any encoding.

The mailbox password goes to the server and nowhere else. Any text that comes back, from the
server or from imaplib (an answer, an exception message, a traceback), reaches a job's detail,
its attempt, the audit trail or a log only through a `Redactor` that knows the password in every
form it takes on the way:

- as sent: raw (a LOGIN literal, `{N}` CRLF and the bytes), IMAP-quoted (`\\"` and `\\\\`),
  base64 (AUTHENTICATE PLAIN, `authzid NUL user NUL password`, whatever the authzid and user:
  a base64 run whose decoded bytes, at any alignment, hold the password is removed whole);
- as rendered back: the UTF-8 bytes read as ASCII (imaplib decodes a BYE so) or Latin-1,
  escaped by Python's repr of str or bytes, once or twice (imaplib quotes lines as reprs of
  bytes, and exception messages quote them again), as JSON, percent-encoded, and with runs of
  whitespace collapsed (as error details are stored).

Modified UTF-7 is not among them: IMAP uses it for mailbox names, never for a password.

A text that repeats a credential command ("you sent: A1 LOGIN user ..."), or still holds a
piece of the password once the known forms are gone (a server that echoes only the first half
of the line), is not quoted at all: `clean` replaces it by a note saying why.
"""

from __future__ import annotations

import base64
import json
import re
import traceback
from urllib.parse import quote, quote_plus

from jobs.execution.actions.registry import JobError

MASK = "***"
# A piece this long of any form of the password makes a text an echo (a shorter password is
# looked for whole).
FRAGMENT = 6
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{4,}={0,2}")
_RESPONSE_CODE = re.compile(r"\s*(\[[A-Z][A-Z0-9-]*\])")


class RedactedError(Exception):
    """An error that is not a JobError, raised while the IMAP session held the password, whose
    message (or a message in its chain) quoted it: its type, traceback and chain are kept, each
    message redacted."""


class Redactor:
    """Redacts the secrets of one IMAP session from any text; see the module's docstring."""

    def __init__(self) -> None:
        self._forms: list[str] = []  # longest first
        self._short: set[str] = set()  # lowercased forms shorter than FRAGMENT
        self._fragments: set[str] = set()  # lowercased FRAGMENT-long pieces of every form
        self._raw: list[bytes] = []
        # The credential commands as sent, the tag aside: "AUTHENTICATE PLAIN", "LOGIN user".
        self._commands = [re.compile(r"\bAUTHENTICATE\s+PLAIN\b", re.IGNORECASE)]
        self._command = "LOGIN"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, secret: str, *, username: str = "", command: str = "LOGIN") -> None:
        """Know `secret` (sent as `username`'s password with `command`) from now on."""
        if not secret:
            return
        self._command = command
        forms = set(self._forms) | secret_forms(secret, username=username)
        self._forms = sorted(forms, key=len, reverse=True)
        # Pieces of every form but the literal's ("{12}" CRLF holds no character of it).
        for form in secret_forms(secret, username=username, literal=False):
            if len(form) < FRAGMENT:
                self._short.add(form.lower())
            self._fragments.update(_pieces(form.lower()))
        self._raw.append(secret.encode("utf-8", "surrogatepass"))
        if username:
            self._commands.append(re.compile(rf"\bLOGIN\s+\"?{re.escape(username)}", re.IGNORECASE))

    def redact(self, text: str) -> str:
        """`text` with every known form of the secrets replaced by ***."""
        if not self._forms or not text:
            return text
        text = _BASE64_RUN.sub(lambda m: MASK if self._holds_secret(m.group()) else m.group(), text)
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def _holds_secret(self, run: str) -> bool:
        """Whether the base64 `run` decodes, from any of its four alignments, to bytes holding a
        secret (the run may start inside someone else's base64 or be glued to a word)."""
        for start in range(4):
            body = run[start:].rstrip("=")
            rest = len(body) % 4
            # A final group of 2 or 3 characters decodes padded; a lone character does not.
            body = body[:-1] if rest == 1 else body + "=" * ((4 - rest) % 4)
            try:
                decoded = base64.b64decode(body, validate=True)
            except ValueError:
                continue
            if any(raw in decoded for raw in self._raw):
                return True
        return False

    def echoes(self, text: str) -> bool:
        """Whether `text` repeats a credential command or holds a piece of a secret."""
        if not self._forms or not text:
            return False
        if any(pattern.search(text) for pattern in self._commands):
            return True
        lowered = text.lower()
        for variant in {lowered, " ".join(lowered.split())}:
            if self._fragments.intersection(_pieces(variant)):
                return True
            if any(form in variant for form in self._short):
                return True
        return False

    def clean(self, text: str, *, subject: str = "the server's answer", strict: bool = True) -> str:
        """`text` with the secrets redacted; a note in its place (keeping a leading response
        code such as [AUTHENTICATIONFAILED]) when it repeats a credential command or still holds
        a piece of a secret, or, when `strict` (a server's text: holding the password at all, it
        repeats what we sent), when it held a secret in any form."""
        redacted = self.redact(text)
        if not self.echoes(redacted) and not (strict and redacted != text):
            return redacted
        note = (
            f"({subject} is not stored: it repeated our {self._command} command "
            "or part of the password)"
        )
        code = _RESPONSE_CODE.match(text)
        if code and not self.echoes(code.group(1)) and self.redact(code.group(1)) == code.group(1):
            return f"{code.group(1)} {note}"
        return note

    def scrub(self, exc: BaseException) -> BaseException:
        """`exc` itself when nothing in it or its chain (__cause__, __context__, notes) quotes a
        secret; otherwise a copy of the chain with each message cleaned: a JobError stays a
        JobError with its code, anything else becomes a RedactedError naming the type."""
        if not self._forms or all(
            self.clean(text, strict=False) == text
            for member in _chain(exc)
            for text in _texts(member)
        ):
            return exc
        return self._copy(exc, {})

    def _copy(self, exc: BaseException, done: dict[int, BaseException]) -> BaseException:
        if id(exc) in done:
            return done[id(exc)]
        if isinstance(exc, JobError):
            copy: BaseException = JobError(
                exc.code,
                self.clean(exc.detail, subject="the detail", strict=False),
                retryable=exc.retryable,
            )
        else:
            message = self.clean(str(exc), subject="the message", strict=False)
            copy = RedactedError(f"{_type_name(exc)}: {message}" if message else _type_name(exc))
        done[id(exc)] = copy
        copy.__traceback__ = exc.__traceback__
        for note in getattr(exc, "__notes__", ()):
            copy.add_note(self.clean(str(note), subject="the note", strict=False))
        copy.__cause__ = self._copy(exc.__cause__, done) if exc.__cause__ is not None else None
        # A context the traceback hides is dropped rather than kept for code that walks it.
        context = exc.__context__
        hidden = exc.__suppress_context__ or context is None
        copy.__context__ = None if hidden or context is None else self._copy(context, done)
        copy.__suppress_context__ = exc.__suppress_context__
        return copy


def secret_forms(secret: str, *, username: str = "", literal: bool = True) -> set[str]:
    """Every textual form of `secret` that the module's docstring lists (of base64, the exact
    AUTHENTICATE PLAIN responses only: `Redactor.redact` decodes any other)."""
    raw = secret.encode("utf-8", "surrogatepass")
    quoted = imap_quote(secret)
    bases = {
        secret,
        quoted,
        *([f"{{{len(raw)}}}\r\n{secret}"] if literal else []),
        raw.decode("ascii", "replace"),
        raw.decode("latin-1"),
        quoted.encode("utf-8", "surrogatepass").decode("ascii", "replace"),
        quoted.encode("utf-8", "surrogatepass").decode("latin-1"),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    user = username.encode("utf-8", "surrogatepass")
    for message in (b"\0" + user + b"\0" + raw, user + b"\0" + user + b"\0" + raw):
        bases.add(base64.b64encode(message).decode())
    forms = set(bases)
    once: set[str] = set()
    for text in bases:
        once.update(_escapes(text))
    forms |= once
    for text in once:
        forms.update(_escapes(text, as_bytes=False))
    forms |= {" ".join(form.split()) for form in forms}
    return {form for form in forms if form.strip()}


def imap_quote(text: str) -> str:
    """The inside of an IMAP quoted string (RFC 3501 4.3), as imaplib quotes a password."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _escapes(text: str, *, as_bytes: bool = True) -> set[str]:
    """The inside of repr(text), ascii(text) and, with as_bytes, repr(text.encode()), each with
    the single quote escaped or not (it depends on the rest of the string being repr'd)."""
    found = set()
    for escape_quote in (True, False):
        found.add(_escape_str(text, escape_quote=escape_quote, ascii_only=False))
        found.add(_escape_str(text, escape_quote=escape_quote, ascii_only=True))
        if as_bytes:
            data = text.encode("utf-8", "surrogatepass")
            found.add(_escape_bytes(data, escape_quote=escape_quote))
    return found


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_str(text: str, *, escape_quote: bool, ascii_only: bool) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "'" and escape_quote:
            out.append("\\'")
        elif (ch.isascii() or not ascii_only) and ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def _escape_bytes(data: bytes, *, escape_quote: bool) -> str:
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "'" and escape_quote:
            out.append("\\'")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _pieces(text: str) -> set[str]:
    return {text[i : i + FRAGMENT] for i in range(len(text) - FRAGMENT + 1)}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend([current.__cause__, current.__context__])
    return seen


def _texts(exc: BaseException) -> list[str]:
    """What rendering `exc` shows of it: its message (for a JobError, the detail the worker
    stores), and its notes."""
    texts = [exc.detail if isinstance(exc, JobError) else str(exc)]
    texts.extend(str(note) for note in getattr(exc, "__notes__", ()))
    texts.append("".join(traceback.format_exception_only(exc)))
    return texts


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
