"""Public ids: a type prefix and a ULID, so ids are opaque and sort by creation time."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeGuard

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_LENGTH = 26
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int) -> str:
    chars = []
    for _ in range(_ULID_LENGTH):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_ulid() -> str:
    """A ULID, monotonic within this process: ids made in the same millisecond still sort in
    the order they were made, so a batch of jobs lists in creation order."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            _last_random = (_last_random + 1) & ((1 << 80) - 1)
        else:
            _last_ms = now_ms
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        return _encode((now_ms << 80) | _last_random)


def new_id(prefix: str) -> str:
    return f"{prefix}_{new_ulid()}"


def ulid_floor(epoch_ms: int) -> str:
    """The smallest ULID of a millisecond: a lower bound for range scans on id."""
    return _encode(epoch_ms << 80)


ID_PATTERN = re.compile(r"^(acc|tsk|evt|job|bop|sch)_[0-9A-HJKMNP-TV-Z]{26}$")


def id_pattern(prefix: str) -> str:
    """The pattern of one type's ids as a whole-string match (`$` lets a final newline in)."""
    return r"\A" + ID_PATTERN.pattern[1:-1].replace("(acc|tsk|evt|job|bop|sch)", prefix) + r"\Z"


def is_valid_id(value: object, prefix: str) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and value.startswith(prefix + "_")
        and ID_PATTERN.fullmatch(value) is not None
    )


class PrefixedId:
    """Default callable for a model's primary key (a class so migrations can serialize it)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def deconstruct(self) -> tuple[str, tuple[str], dict[str, Any]]:
        return ("core.ids.PrefixedId", (self.prefix,), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixedId) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)


class PublicIdField(models.CharField):  # type: ignore[type-arg]  # not subscriptable at runtime
    """A prefixed public id as the primary key.

    On PostgreSQL Django gives every indexed `varchar` column a second `varchar_pattern_ops`
    index for LIKE queries. Ids are never searched with LIKE, and each extra index costs every
    insert and every status change of a job, so the column is declared under varchar's SQL
    name, `character varying`, which Django does not pair with such an index. Foreign keys to
    it take the same type.
    """

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        self.prefix = prefix
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("default", PrefixedId(prefix))
        kwargs.setdefault("primary_key", True)
        kwargs.setdefault("editable", False)
        super().__init__(**kwargs)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, _, args, kwargs = super().deconstruct()
        kwargs.pop("default", None)
        kwargs.pop("primary_key", None)
        kwargs.pop("editable", None)
        if kwargs.get("max_length") == 32:
            kwargs.pop("max_length")
        return name, "core.ids.PublicIdField", [self.prefix, *args], kwargs

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        db_type = super().db_type(connection)
        if connection.vendor == "postgresql" and db_type and db_type.startswith("varchar"):
            return "character varying" + db_type[len("varchar") :]
        return db_type
