"""An OpenFeature provider for other Python services: the same flags, evaluated by Parley.

    from openfeature import api
    from parley.features.release.openfeature import ParleyProvider

    api.set_provider(ParleyProvider("https://chat.example.com", token))
    client = api.get_client()
    client.get_boolean_value("chat_notifications_beta", False,
                             EvaluationContext(attributes={"contract": "c-42"}))

Each evaluation is one `GET /v1/flags` as the token's user. The context's `targeting_key`
(a Parley user id) evaluates for that user instead — the token must then be an admin's — and
the `contract`, `inbox` and `room` attributes are the stable keys percentage flags bucket by.
Parley's flags are booleans; asking for another type is a TYPE_MISMATCH.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

KEY_ATTRIBUTES = ("contract", "inbox", "room")
_REASONS = {
    "off": Reason.DISABLED,
    "on": Reason.STATIC,
    "percentage": Reason.SPLIT,
    "outside_percentage": Reason.SPLIT,
}


class ParleyProvider(AbstractProvider):
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        http: httpx.Client | None = None,
        async_http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__()
        self._base_url = base_url
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http = http
        self._async_http = async_http

    def get_metadata(self) -> Metadata:
        return Metadata(name="parley")

    def shutdown(self) -> None:
        if self._http is not None:
            self._http.close()

    async def aclose(self) -> None:
        """Close the async connection pool (`shutdown()` closes the sync one)."""
        if self._async_http is not None:
            await self._async_http.aclose()

    def _sync_client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self._base_url, timeout=self._timeout)
        return self._http

    def _async_client(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout)
        return self._async_http

    # -- booleans: Parley's flags --------------------------------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        try:
            response = self._sync_client().get(
                "/v1/flags", params=_params(evaluation_context), headers=self._headers
            )
        except httpx.HTTPError as exc:
            return _error(default_value, ErrorCode.GENERAL, f"Parley unreachable: {exc}")
        return _resolve(flag_key, default_value, response)

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        try:
            response = await self._async_client().get(
                "/v1/flags", params=_params(evaluation_context), headers=self._headers
            )
        except httpx.HTTPError as exc:
            return _error(default_value, ErrorCode.GENERAL, f"Parley unreachable: {exc}")
        return _resolve(flag_key, default_value, response)

    # -- every other type is a mismatch ----------------------------------------------------------

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return _mismatch(default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return _mismatch(default_value)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return _mismatch(default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return _mismatch(default_value)


def _params(context: EvaluationContext | None) -> dict[str, str]:
    if context is None:
        return {}
    params = {
        name: str(context.attributes[name])
        for name in KEY_ATTRIBUTES
        if context.attributes.get(name) not in (None, "")
    }
    if context.targeting_key:
        params["as_user"] = context.targeting_key
    return params


def _resolve(flag_key: str, default: bool, response: httpx.Response) -> FlagResolutionDetails[bool]:
    if response.status_code != 200:
        code = ErrorCode.INVALID_CONTEXT if response.status_code < 500 else ErrorCode.GENERAL
        return _error(default, code, f"GET /v1/flags answered {response.status_code}")
    try:
        found = response.json()["flags"].get(flag_key)
    except (ValueError, KeyError, AttributeError) as exc:
        return _error(default, ErrorCode.PARSE_ERROR, f"unexpected answer: {exc}")
    if found is None:
        return _error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag_key!r}")
    value = bool(found["value"])
    return FlagResolutionDetails(
        value=value,
        reason=_REASONS.get(found["reason"], Reason.TARGETING_MATCH),
        variant="on" if value else "off",
        flag_metadata={"parley_reason": str(found["reason"])},
    )


def _error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


def _mismatch(default: Any) -> FlagResolutionDetails[Any]:
    return _error(default, ErrorCode.TYPE_MISMATCH, "Parley's flags are booleans")
