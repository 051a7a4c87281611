"""The forms a password takes on its way through text, computed independently of the client's
redactor (jobs.execution.mailsync.redact) so that a form it forgets is found, and helpers to look
for them in stored rows, answers and logs."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

TOKEN = secrets.token_hex(6)
# Every character IMAP quoting or Python's repr escapes, a double space (whitespace is collapsed
# in details), a brace (literal syntax), non-ASCII; no CR or LF (the echo is line-based).
PASSWORDS = {
    "ascii": f'Q  "Zx{TOKEN}" \\ {{9}}\' k',
    "non_ascii": f'ü "Zx{TOKEN}" \\ €{{3}}\' ß',
}


def encodings(secret: str, user: str) -> dict[str, str]:
    """Each form in which the password could reach a text, by name."""
    raw = secret.encode()
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    login = user.encode()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    forms = {
        "raw": secret,
        "IMAP quoted": quoted,
        "IMAP literal": f"{{{len(raw)}}}\r\n{secret}",
        "base64 of AUTHENTICATE PLAIN": b64(b"\0" + login + b"\0" + raw),
        "base64 of AUTHENTICATE PLAIN with authzid": b64(login + b"\0" + login + b"\0" + raw),
        "base64 of the password": b64(raw),
        "percent-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
        "repr of str": repr(secret)[1:-1],
        "ascii()": ascii(secret)[1:-1],
        "repr of bytes": repr(raw)[2:-1],
        "repr of the quoted bytes": repr(quoted.encode())[2:-1],
        "repr of the quoted str": repr(quoted)[1:-1],
        "UTF-8 read as ASCII": raw.decode("ascii", "replace"),
        "UTF-8 read as Latin-1": raw.decode("latin-1"),
    }
    # Error details are stored with runs of whitespace collapsed into one space.
    for name, form in list(forms.items()):
        if " ".join(form.split()) != form:
            forms[f"{name}, whitespace collapsed"] = " ".join(form.split())
    # A server that repeats only part of the command (a truncated echo) must not leak a piece.
    pieces = [
        "raw",
        "IMAP quoted",
        "raw, whitespace collapsed",
        "IMAP quoted, whitespace collapsed",
    ]
    for name, form in [(name, forms[name]) for name in pieces if name in forms]:
        for i in range(len(form) - 7):
            forms[f"8 characters of the {name} form#{i}"] = form[i : i + 8]
    return forms


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON-like value (a row of `.values()`, a decoded API answer)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def leaked(texts: dict[str, str], forms: dict[str, str]) -> dict[str, list[str]]:
    found = {}
    for where, text in texts.items():
        names = {name.split("#")[0] for name, form in forms.items() if form and form in text}
        if names:
            found[where] = sorted(names)
    return found
