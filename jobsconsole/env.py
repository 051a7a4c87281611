"""Typed reads of the environment: the one place settings come from."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def env_days(name: str, default: float | None) -> float | None:
    """A retention in days (fractions allowed), or None for "keep": the value `keep` or an
    empty string. Zero and negative values are refused: a retention of 0 would remove a job
    the moment it finishes, which is never what a typo meant."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"", "keep"}:
        return None
    try:
        days = float(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number of days or 'keep', got {raw!r}") from exc
    if not days > 0 or days != days or days == float("inf"):
        raise ValueError(f"{name} must be more than 0 days (or 'keep'), got {raw!r}")
    return days


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(url: str, *, base_dir: Path) -> dict:
    """Turn `postgres://user:pass@host:port/name?opt=v` or `sqlite:///path` into DATABASES['x']."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"sqlite", "sqlite3"}:
        # sqlite:///relative.db is relative to the project, sqlite:////abs/path.db is absolute.
        path = unquote(parts.path)
        if path.startswith("//"):
            name = path[1:]
        else:
            name = str(base_dir / path.lstrip("/")) if path.strip("/") else ":memory:"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in {"postgres", "postgresql", "pgsql", "psql"}:
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
        }
    raise ValueError(
        f"DATABASE_URL has an unsupported scheme {scheme!r} (use postgres:// or sqlite:///)"
    )
