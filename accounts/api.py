"""Accounts API: operators create, list, pause and resume; an account key sees its own account."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.permissions import principal
from accounts.serializers import AccountInput, AccountPageSerializer, AccountSerializer, PauseInput
from core.api.idempotency import idempotent
from core.api.pagination import page_params, paginate, prefixed_id
from core.api.params import ACCOUNT_ID, IDEMPOTENCY_KEY, page_parameters
from core.api.serializers import error_responses
from core.api.views import page_response, reject_unknown_params, validated


class AccountViewSet(viewsets.ViewSet):
    operator_actions = ("list", "create", "pause", "resume")
    staff_permissions = {
        "list": "accounts.view_account",
        "retrieve": "accounts.view_account",
        "create": "accounts.add_account",
        "pause": "accounts.change_account",
        "resume": "accounts.change_account",
    }

    @extend_schema(
        operation_id="accounts_list",
        summary="List accounts (operators)",
        parameters=page_parameters(prefixed_id("acc")),
        responses={200: AccountPageSerializer, **error_responses()},
        tags=["accounts"],
    )
    def list(self, request: Request) -> Response:
        reject_unknown_params(request)
        limit, cursor = page_params(request.query_params)
        page = paginate(
            selectors.accounts_visible(principal(request)),
            limit=limit,
            cursor=cursor,
            parse_id=prefixed_id("acc"),
        )
        return page_response(request, page, AccountSerializer)

    @extend_schema(
        operation_id="accounts_create",
        summary="Create account (operators)",
        description="The IMAP password is write-only and stored encrypted.",
        parameters=[IDEMPOTENCY_KEY],
        request=AccountInput,
        responses={201: AccountSerializer, **error_responses(422, body=True)},
        tags=["accounts"],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = validated(AccountInput, request)
        account = services.account_create(
            name=data["name"],
            email=data.get("email", ""),
            imap=dict(data.get("imap") or {}),
            actor=principal(request).actor,
        )
        return Response(AccountSerializer(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="accounts_get",
        summary="Get account",
        description="Operators see any account; an account key sees its own.",
        parameters=[ACCOUNT_ID],
        responses={200: AccountSerializer, **error_responses()},
        tags=["accounts"],
    )
    def retrieve(self, request: Request, account_id: str) -> Response:
        account = selectors.account_get(principal(request), account_id)
        return Response(AccountSerializer(account).data)

    @extend_schema(
        operation_id="accounts_pause",
        summary="Pause account (operators)",
        description="Holds the account's scheduled jobs until resumed. 409 when already paused.",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=PauseInput,
        responses={200: AccountSerializer, **error_responses(409, 422, body=True)},
        tags=["accounts"],
    )
    @idempotent
    def pause(self, request: Request, account_id: str) -> Response:
        account = selectors.account_get(principal(request), account_id)
        data = validated(PauseInput, request)
        account = services.account_pause(
            account_id=account.pk, actor=principal(request).actor, reason=data.get("reason", "")
        )
        return Response(AccountSerializer(account).data)

    @extend_schema(
        operation_id="accounts_resume",
        summary="Resume account (operators)",
        description="409 when not paused.",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=PauseInput,
        responses={200: AccountSerializer, **error_responses(409, 422, body=True)},
        tags=["accounts"],
    )
    @idempotent
    def resume(self, request: Request, account_id: str) -> Response:
        account = selectors.account_get(principal(request), account_id)
        data = validated(PauseInput, request)
        account = services.account_resume(
            account_id=account.pk, actor=principal(request).actor, reason=data.get("reason", "")
        )
        return Response(AccountSerializer(account).data)
