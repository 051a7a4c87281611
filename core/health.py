"""`/healthz`: is this web process up, and does its database answer?

For load balancers, orchestrators and uptime checks: no authentication, one cheap query, and an
answer that says nothing about accounts, jobs or anything else a tenant owns.
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.api.exceptions import error_body

logger = logging.getLogger(__name__)


# Exempt from CSRF only so that a POST gets the JSON 405 below instead of an HTML 403: the view
# changes nothing whatever the method.
@csrf_exempt
def healthz(request: HttpRequest) -> JsonResponse:
    """200 `{"status": "ok", "database": "ok"}` when the database answers `SELECT 1`; 503 in the
    API's error shape when it does not. Never cached."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            error_body("method_not_allowed", f'Method "{request.method}" not allowed.'), status=405
        )
        response["Allow"] = "GET, HEAD"
        return response
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The cause goes to the log, not to whoever asks: it may name the database's host or file.
        # One line, not a traceback: a probe asks every few seconds for as long as it lasts.
        logger.warning("healthz: the database did not answer: %s", exc)
        response = JsonResponse(
            error_body("unavailable", "The database did not answer."), status=503
        )
    else:
        response = JsonResponse({"status": "ok", "database": "ok"})
    response["Cache-Control"] = "no-store"
    return response
