"""The console's front page (templates/admin/index.html): live counts of the queue, the
operator's own recent commands (from the audit trail, in place of Django's always-empty
"Recent actions"), and django-q2's tables set apart as broker internals."""

from __future__ import annotations

from typing import Any

from django import template

from core.actors import Actor
from core.models import AuditEvent
from jobs.admin.views import counts_context

register = template.Library()

# django-q2's own tables: its broker's bookkeeping, where "failed" means a failed task message.
BROKER_APPS = frozenset({"django_q"})


@register.inclusion_tag("admin/jobs/_index_counts.html")
def console_counts() -> dict[str, Any]:
    return counts_context()


@register.inclusion_tag("admin/jobs/_recent_commands.html", takes_context=True)
def recent_commands(context: template.Context, limit: int = 10) -> dict[str, Any]:
    actor = Actor.user(context["user"]).name
    events = list(AuditEvent.objects.filter(actor=actor).order_by("-id")[:limit])
    return {"events": events}


@register.filter
def console_apps(app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [app for app in app_list if app["app_label"] not in BROKER_APPS]


@register.filter
def broker_apps(app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [app for app in app_list if app["app_label"] in BROKER_APPS]
