"""`Authorization: Bearer <api key>` for the API (staff users use the session instead)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import apikeys
from accounts.models import ApiKey
from core.input import is_printable_ascii


class ApiKeyUser:
    """What `request.user` is for a request authenticated by an API key: not a Django user,
    never staff, holding no model permissions."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def get_username(self) -> str:
        return f"key:{self.key.prefix}"

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def __str__(self) -> str:
        return self.get_username()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates `Authorization: Bearer jc_<prefix>_<secret>`.

    No Authorization header: not this scheme, so the session may still authenticate a staff
    user. A Bearer header with a wrong, revoked or malformed key: 401, never a fallback.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <api key>'."
            )
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        if not is_printable_ascii(raw_key, 300):  # a NUL would reach the key lookup
            raise exceptions.AuthenticationFailed("Invalid API key.")
        key = apikeys.authenticate(raw_key)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) with a WWW-Authenticate challenge when unauthenticated.
        return f'{self.keyword} realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in the OpenAPI schema (drf-spectacular)."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "jc_<prefix>_<secret>",
            "description": "An API key from `manage.py create_api_key`.",
        }
