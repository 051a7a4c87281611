"""Who may get the browsable API: a staff user's session asking for HTML, nobody else.

DRF offers every caller its BrowsableAPIRenderer, so `?format=api` or `Accept: text/html`
turned any answer, errors included, into an HTML page. An API key's answers are JSON whatever it
asks: the browsable renderer is not offered to it, and its `format=api` switch is ignored (an
Accept header that allows no JSON is a 406, in JSON).
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer
from rest_framework.request import Request


def _is_staff_session(request: Request) -> bool:
    user = getattr(request, "user", None)
    return (
        getattr(request, "auth", None) is None
        and user is not None
        and getattr(user, "is_staff", False)
    )


class ApiContentNegotiation(DefaultContentNegotiation):
    _browsable_format = BrowsableAPIRenderer.format

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        self._ignored_format: str | None = None
        if not _is_staff_session(request):
            renderers = [r for r in renderers if not isinstance(r, BrowsableAPIRenderer)]
            self._ignored_format = self._browsable_format
        chosen: tuple[BaseRenderer, str] = super().select_renderer(
            request, renderers, format_suffix
        )
        return chosen

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        if format == getattr(self, "_ignored_format", None):
            return list(renderers)
        return super().filter_renderers(renderers, format)
