"""Who acts: a user, an API key or the system. Recorded on every audit event."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


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
    def user(cls, user) -> Actor:
        return cls(ActorType.USER, f"user:{user.get_username()}")

    @classmethod
    def api_key(cls, key) -> Actor:
        return cls(ActorType.API_KEY, f"key:{key.prefix}")

    def __str__(self) -> str:
        return self.name
