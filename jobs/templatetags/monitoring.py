"""Filters for the observability pages: durations and shares, written the same way everywhere."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """`850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`; a dash for no value."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


@register.filter
def percent(share: float | None) -> str:
    """`12.5 %` of a share between 0 and 1; a dash for no value."""
    if share is None:
        return "—"
    return f"{share * 100:.1f} %"


@register.filter
def per_minute(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"
