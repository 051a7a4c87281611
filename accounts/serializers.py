"""Account shapes. The IMAP password is write-only: never rendered, only whether one is set."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import Account, ImapSecurity
from core.api.serializers import (
    BlankAsNullCharField,
    PageSerializer,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictSerializer,
)

# The rules of accounts.services._clean_imap and account_create, as the API checks a body (the
# services strip host, name and folder names, so those must hold more than white space).


class ImapInput(StrictSerializer):
    host = StrictCharField(max_length=255, required=False, non_blank=True)
    port = StrictIntegerField(min_value=1, max_value=65535, required=False)
    security = StrictChoiceField(choices=ImapSecurity.choices, required=False)
    username = StrictCharField(max_length=255, required=False, allow_blank=True)
    password = StrictCharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Write-only; stored encrypted.",
    )
    folders = serializers.ListField(
        child=StrictCharField(max_length=500, non_blank=True), required=False, max_length=100
    )

    def run_validation(self, data: Any = serializers.empty) -> Any:
        """A message that quotes a bad value ('"x" is not a valid choice.') never quotes the
        password of the same request (pasted into the wrong field, say)."""
        try:
            return super().run_validation(data)
        except serializers.ValidationError as exc:
            password = data.get("password") if isinstance(data, dict) else None
            if not isinstance(password, str) or not password:
                raise
            raise serializers.ValidationError(_without(exc.detail, password)) from None


def _without(detail: Any, secret: str) -> Any:
    """Error details (nested dicts and lists of messages, and field names) with `secret` out."""
    if isinstance(detail, dict):
        return {_without(key, secret): _without(value, secret) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_without(item, secret) for item in detail]
    if isinstance(detail, str) and secret in detail:
        code = getattr(detail, "code", None)
        return serializers.ErrorDetail(detail.replace(secret, "***"), code=code)
    return detail


class StrictEmailField(serializers.EmailField):
    """An address as sent (not trimmed), no longer than the column (254)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class AccountInput(StrictSerializer):
    name = StrictCharField(max_length=200, non_blank=True)
    email = StrictEmailField(required=False, allow_blank=True)
    imap = ImapInput(required=False)


class PauseInput(StrictSerializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class ImapOutput(serializers.Serializer):
    host = serializers.CharField(source="imap_host")
    port = serializers.IntegerField(source="imap_port")
    security = serializers.ChoiceField(choices=ImapSecurity.choices, source="imap_security")
    username = serializers.CharField(source="imap_username")
    folders = serializers.ListField(child=serializers.CharField(), source="imap_folders")
    password_set = serializers.SerializerMethodField()

    def get_password_set(self, account: Account) -> bool:
        return bool(account.imap_password_encrypted)


class AccountSerializer(serializers.ModelSerializer):
    email = BlankAsNullCharField(allow_null=True)
    paused = serializers.BooleanField(source="is_paused")
    imap = ImapOutput(source="*")

    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "email",
            "paused",
            "paused_at",
            "paused_reason",
            "imap",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AccountPageSerializer(PageSerializer):
    results = AccountSerializer(many=True)
