"""The server's half of live pages (core/static/core/live.js): a page marks a region with the URL
of its fragment, and the view answers that URL with the region's HTML alone.

A fragment is the page's own URL with `?_live=<region>` (`1` for a page's only region): the view
renders the region's template with the same queries the page runs for it, and nothing else of
the page. `_live` is taken off the query string before the page's own filters read it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.utils.html import format_html
from django.utils.safestring import SafeString

LIVE_PARAM = "_live"
# Sent by live.js with every refresh (a fragment URL answers without it too).
LIVE_HEADER = "X-Live-Refresh"


def live_region(request: HttpRequest) -> str:
    """The region a live refresh asks for ('' for a page load)."""
    return request.GET.get(LIVE_PARAM, "")


def strip_live(request: HttpRequest) -> str:
    """Remove `_live` from the request's query string (for views and changelists that read
    every parameter as a filter) and return the region it named."""
    region = live_region(request)
    request._live_region = region  # type: ignore[attr-defined]  # read by is_refresh
    if LIVE_PARAM in request.GET:
        query = request.GET.copy()
        del query[LIVE_PARAM]
        query._mutable = False
        request.GET = query  # type: ignore[assignment]  # immutable again, as Django makes it
        request.META["QUERY_STRING"] = query.urlencode()
    return region


def fragment_url(request: HttpRequest, region: str = "1") -> str:
    """The URL of a region of the page `request` shows: the same path and query, plus
    `_live=region`."""
    query: QueryDict = request.GET.copy()
    query[LIVE_PARAM] = region
    return f"{request.path}?{query.urlencode()}"


def refresh_ms() -> int:
    return int(settings.JOBS_LIVE_REFRESH_MS)


def is_refresh(request: HttpRequest) -> bool:
    """Whether `request` asks for a fragment (after strip_live took `_live` off)."""
    return bool(getattr(request, "_live_region", ""))


def region_attrs(url: str) -> SafeString:
    """The attributes that make an element a live region refreshed from `url`."""
    return format_html('data-live="{}" data-live-interval="{}"', url, refresh_ms())
