"""The API docs pages (Swagger UI, ReDoc) keep the browser on this site.

Their bundles come from the installed drf-spectacular-sidecar, but the code in them still knows
outside addresses: ReDoc shows a logo it loads from its maker's CDN on every page, with no option
to turn it off. A Content-Security-Policy that allows this origin only (plus the inline, data:
and blob: resources both UIs make themselves) has the browser refuse such a load; ReDoc then
leaves the logo out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

SAME_ORIGIN_ONLY = "default-src 'self' 'unsafe-inline' data: blob:; frame-ancestors 'none'"


def same_origin_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a view so that its page may load nothing from another origin."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return response

    return wrapped
