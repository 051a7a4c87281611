"""Mailbox credentials encrypted at rest with Fernet (key: settings.JOBS_CREDENTIALS_KEY)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key: str, secret_key: str) -> Fernet:
    if key:
        return Fernet(key.encode())
    # Derived from SECRET_KEY when no dedicated key is configured; a distinct label keeps it
    # from equalling any other use of SECRET_KEY.
    digest = hashlib.sha256(b"jobsconsole.credentials:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _cipher() -> Fernet:
    return _fernet(settings.JOBS_CREDENTIALS_KEY, settings.SECRET_KEY)


def encrypt_secret(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt_secret(token: str) -> str:
    """The plaintext, or "" when nothing is stored. Raises ValueError when the key changed."""
    if not token:
        return ""
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("stored credential cannot be decrypted with the configured key") from None
