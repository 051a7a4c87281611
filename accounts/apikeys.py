"""API keys: creation, revocation and authentication.

A key reads `jc_<prefix>_<secret>`. The prefix is stored in clear and shown in lists and audit
events (`key:<prefix>`), so a key can be recognised without being revealed; the secret is shown
once, at creation, and only its SHA-256 is stored. A random 256-bit secret needs no slow hash:
there is nothing to brute-force from its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts import sql
from accounts.models import Account, ApiKey
from core.actors import Actor
from core.audit import AuditCommand, audit
from core.errors import Conflict, NotFound, ValidationFailed

KEY_SCHEME = "jc"
PREFIX_LENGTH = 10
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# last_used_at is a hint for operators, not an audit trail: writing it on every request would
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def api_key_create(
    *,
    account: Account | None,
    actor: Actor,
    name: str = "",
    read_only: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key for `account` (None: an operator key that sees every account).

    Returns (key, raw_key); `raw_key` is the only copy of the secret and must be shown once.
    """
    if len(name) > 200:
        raise ValidationFailed.for_field("name", "is too long (200 characters at most).")
    secret = secrets.token_urlsafe(32)
    for _ in range(5):
        prefix = _new_prefix()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    prefix=prefix,
                    secret_hash=_hash_secret(secret),
                    name=name,
                    account=account,
                    read_only=read_only,
                )
                audit(
                    actor=actor,
                    command=AuditCommand.CREATE_API_KEY,
                    account_id=account.pk if account else "",
                    data={"prefix": prefix, "read_only": read_only, "operator": account is None},
                )
        except IntegrityError:
            continue  # a prefix collision (36^10): draw another
        return key, f"{KEY_SCHEME}_{prefix}_{secret}"
    raise Conflict("Could not draw a unique key prefix.", code="key_prefix_collision")


def api_key_revoke(*, prefix: str, actor: Actor) -> ApiKey:
    """Revoke a key: it stops authenticating at once. Revoking twice is a no-op."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(prefix=prefix).first()
        if key is None:
            raise NotFound(f"API key {prefix} not found.")
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit(
                actor=actor,
                command=AuditCommand.REVOKE_API_KEY,
                account_id=key.account_id or "",
                data={"prefix": key.prefix},
            )
    return key


def parse_key(raw_key: str) -> tuple[str, str] | None:
    """Split `jc_<prefix>_<secret>` into (prefix, secret), or None when it is not of that shape."""
    scheme, _, rest = raw_key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != PREFIX_LENGTH or not secret or len(secret) > 200:
        return None
    return prefix, secret


def authenticate(raw_key: str) -> ApiKey | None:
    """The active key `raw_key` stands for, or None. The secret is compared in constant time."""
    parsed = parse_key(raw_key)
    if parsed is None:
        return None
    prefix, secret = parsed
    # Every API request runs this lookup: a plain query and Model.from_db skip the ORM's query
    # building and compiling, and RawQuerySet's column mapping, which together took longer than
    # the database's answer.
    with connection.cursor() as cursor:
        cursor.execute(sql.KEY_BY_PREFIX, [prefix])
        row = cursor.fetchone()
    key = ApiKey.from_db(connection.alias, sql.KEY_FIELDS, row) if row else None
    if key is not None and connection.vendor == "sqlite":
        # SQLite's plain cursor gives naive UTC datetimes; the ORM's converters would add the zone.
        for name in ("created_at", "revoked_at", "last_used_at"):
            if getattr(key, name) is not None:
                setattr(key, name, timezone.make_aware(getattr(key, name), UTC))
    digest = _hash_secret(secret)
    # Compare even when the prefix is unknown, so the time taken does not say which it was.
    expected = key.secret_hash if key else "0" * len(digest)
    if not hmac.compare_digest(digest, expected) or key is None or not key.is_active:
        return None
    api_key_touch(key)
    return key


def api_key_touch(key: ApiKey) -> None:
    """Record that `key` was used, at most once per LAST_USED_RESOLUTION."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
