"""Template tags and filters of the console, each rule in one place:

- `when` and `ago`: the one way a moment is shown (the format of settings.FORMAT_MODULE_PATH,
  with seconds and the time zone, beside or under a relative "3 min ago");
- `live_region`: the attributes of a live region (core.live, core/static/core/live.js)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core import live

register = template.Library()

DASH = "—"


def absolute(moment: datetime) -> str:
    """'2026-12-01 12:25:45 UTC' (the console's DATETIME_FORMAT) in the current time zone."""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def relative(moment: datetime, now: datetime | None = None) -> str:
    """'just now', '42 s ago', '3 min ago', '2 h 5 min ago', '3 d ago', or 'in 4 min'."""
    now = now or timezone.now()
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 2:
        return "just now"
    if seconds < 60:
        text = f"{seconds} s"
    elif seconds < 3600:
        text = f"{seconds // 60} min"
    elif seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        text = f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours} h"
    else:
        text = f"{seconds // 86400} d"
    return f"in {text}" if future else f"{text} ago"


def _readable(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


@register.filter
def when(value: object) -> SafeString | str:
    """The absolute time, with the relative one beside it: for pages about one thing."""
    moment = _readable(value)
    if moment is None:
        return DASH if value in (None, "") else str(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time> <span class="quiet when-relative">({})</span>',
        moment.isoformat(),
        relative(moment),
        absolute(moment),
        relative(moment),
    )


@register.filter
def ago(value: object) -> SafeString | str:
    """The relative time, with the absolute one on hover: for lists."""
    moment = _readable(value)
    if moment is None:
        return DASH if value in (None, "") else str(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        absolute(moment),
        relative(moment),
    )


@register.simple_tag(takes_context=True)
def live_region(context: template.Context, region: str = "1", url: str = "") -> SafeString:
    """`data-live` and `data-live-interval` for a region of this page (or of `url`)."""
    return live.region_attrs(url or live.fragment_url(context["request"], region))


def _label(key: str) -> str:
    return key.replace("_", " ")


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in data.items():
        label = f"{prefix}{_label(str(key))}"
        if isinstance(value, dict) and value:
            items.extend(_flatten(value, f"{label}."))
        elif isinstance(value, list | tuple):
            items.append((label, ", ".join(str(v) for v in value) or DASH))
        elif value is None or value == "" or value == {}:
            items.append((label, DASH))
        elif isinstance(value, bool):
            items.append((label, "yes" if value else "no"))
        else:
            items.append((label, str(value)))
    return items


@register.filter
def labelled(data: object) -> SafeString | str:
    """An audit event's data (a JSON object) as labelled values, never as Python dict text:
    `count 3 · filter.status failed, stalled`."""
    if not isinstance(data, dict) or not data:
        return ""
    return format_html_join(
        " ",
        '<span class="datum"><span class="datum-label">{}</span> <span title="{}">{}</span></span>',
        (
            (label, value, value if len(value) <= 160 else value[:159] + "…")
            for label, value in _flatten(data)
        ),
    )


@register.filter
def dash(value: object) -> object:
    """A dash for an empty value (None, '', an empty list or object)."""
    return DASH if value in (None, "", [], {}) else value


@register.filter
def duration(milliseconds: object) -> str:
    """A duration given in milliseconds: '30.12 s', '4 min 2 s'; a dash when unknown."""
    if not isinstance(milliseconds, int | float):
        return DASH
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"
