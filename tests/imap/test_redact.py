"""The redactor on its own: every form of a password, in any surrounding text, and the echo rule
(a text that repeats the login command, or a piece of the password, is not quoted)."""

from __future__ import annotations

import base64
import traceback

import pytest

from jobs.execution.actions.registry import JobError
from jobs.execution.mailsync.redact import RedactedError, Redactor
from tests.imap.secrecy import PASSWORDS, TOKEN, encodings, leaked

USER = "box@example.test"
SECRETS = [*PASSWORDS.values(), f"plain-{TOKEN}", "tab\there\r\nline", "a\\b"]


def redactor(secret: str, command: str = "LOGIN") -> Redactor:
    r = Redactor()
    r.add(secret, username=USER, command=command)
    return r


@pytest.mark.parametrize("secret", SECRETS)
def test_every_form_is_redacted_in_any_text(secret):
    r = redactor(secret)
    forms = encodings(secret, USER)
    for name, form in forms.items():
        if name.startswith("8 characters"):
            continue
        for text in (form, f"NO you sent: {form}", f"[b'x {form}'] and {form}!", f"{form}{form}"):
            out = r.redact(text)
            assert leaked({name: out}, forms) == {}, (name, text, out)
            assert "***" in out


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("authzid", [b"", b"a", b"ab", b"abc", USER.encode()])
def test_base64_holding_the_password_is_redacted_whatever_surrounds_it(secret, authzid):
    """AUTHENTICATE PLAIN with any authzid and user: the password sits at any of the three
    alignments of base64, and the whole run goes (no edge of it is left to decode)."""
    message = authzid + b"\0" + USER.encode() + b"\0" + secret.encode()
    encoded = base64.b64encode(message).decode()
    out = redactor(secret).redact(f"+ {encoded} trailing")
    assert out == "+ *** trailing"


def test_a_text_without_the_password_is_left_alone():
    r = redactor(PASSWORDS["ascii"])
    for text in (
        "[AUTHENTICATIONFAILED] Invalid credentials (Failure)",
        "LOGIN failed.",
        "command: LOGIN => socket error: EOF",
        f"Mailbox doesn't exist: INBOX/{USER}",
    ):
        assert r.clean(text) == text


def test_a_text_repeating_the_login_is_replaced_by_a_note():
    secret = PASSWORDS["ascii"]
    r = redactor(secret)
    quoted = encodings(secret, USER)["IMAP quoted"]
    note = (
        "(the server's answer is not stored: it repeated our LOGIN command or part of the password)"
    )
    for text in (
        f'[AUTHENTICATIONFAILED] you sent: A1 LOGIN {USER} "{quoted}"',
        f"[AUTHENTICATIONFAILED] you sent: A1 LOGIN {USER}",  # cut before the password
        f'[AUTHENTICATIONFAILED] you sent: "{quoted[:7]}',  # the first seven characters only
        f"[AUTHENTICATIONFAILED] {secret[4:12].upper()}",  # a piece, in another case
    ):
        assert r.clean(text) == f"[AUTHENTICATIONFAILED] {note}", text
    # The password in any form in a server's answer: it repeated what we sent.
    assert r.clean(f"no such user {secret}") == note
    # A message that is not the server's keeps its text, redacted.
    assert r.clean(f"no such user {secret}", strict=False) == "no such user ***"


def test_authenticate_is_named_and_recognised():
    secret = PASSWORDS["non_ascii"]
    r = redactor(secret, command="AUTHENTICATE")
    assert r.clean("BAD you sent: A1 AUTHENTICATE PLAIN") == (
        "(the server's answer is not stored: it repeated our AUTHENTICATE command "
        "or part of the password)"
    )


def test_an_exception_without_the_password_is_kept_as_it_is():
    r = redactor(PASSWORDS["ascii"])
    try:
        try:
            raise OSError("network unreachable")
        except OSError as exc:
            raise JobError("provider_unavailable", "unreachable") from exc
    except JobError as exc:
        assert r.scrub(exc) is exc


def test_an_exception_chain_quoting_the_password_is_copied_redacted():
    secret = PASSWORDS["ascii"]
    r = redactor(secret)
    try:
        try:
            try:
                raise KeyError(secret)
            except KeyError:
                raise RuntimeError(f"while storing {secret.encode()!r}") from None
        except RuntimeError as exc:
            exc.add_note(f"note: {secret}")
            raise JobError("provider_protocol_error", "answered oddly") from exc
    except JobError as exc:
        original = exc
    clean = r.scrub(original)

    assert isinstance(clean, JobError) and clean is not original
    assert clean.code == "provider_protocol_error" and clean.detail == "answered oddly"
    cause = clean.__cause__
    assert isinstance(cause, RedactedError)
    assert str(cause) == "RuntimeError: while storing b'***'"
    assert cause.__notes__ == ["note: ***"]
    # The KeyError was hidden (raise ... from None): dropped, not kept for code that walks it.
    assert cause.__context__ is None and cause.__suppress_context__
    assert cause.__traceback__ is original.__cause__.__traceback__
    rendered = "".join(traceback.format_exception(clean))
    assert leaked({"traceback": rendered}, encodings(secret, USER)) == {}
    assert "RuntimeError: while storing b'***'" in rendered and "direct cause" in rendered


def test_no_secret_no_redaction():
    r = Redactor()
    r.add("")
    assert not r
    assert r.clean("LOGIN a b") == "LOGIN a b"
