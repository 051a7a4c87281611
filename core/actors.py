"""Who acts: a user, an API key or the system. Recorded on every audit event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.db import models


class _User(Protocol):
    """A Django user (core names no user model)."""

    def get_username(self) -> str: ...


class _Key(Protocol):
    """An API key (accounts.models.ApiKey; core imports no other app)."""

    @property
    def prefix(self) -> str: ...


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


@dataclass(frozen=True)
class Actor:
    type: ActorType
    name: str  # "user:alice", "key:ab12cd34", "system:worker"

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(ActorType.SYSTEM, f"system:{component}")

    @classmethod
    def user(cls, user: _User) -> Actor:
        return cls(ActorType.USER, f"user:{user.get_username()}")

    @classmethod
    def api_key(cls, key: _Key) -> Actor:
        return cls(ActorType.API_KEY, f"key:{key.prefix}")

    def __str__(self) -> str:
        return self.name
