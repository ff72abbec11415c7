"""OpenAPI descriptions of the chat's routes, for apps that use sanic-ext.

sanic-chat does not depend on sanic-ext: Sanic extends every app as soon
as sanic-ext is importable (its ``AUTO_EXTEND`` setting, on by default),
so a dependency would give every host app a public ``/docs`` listing its
own routes. When sanic-ext is installed anyway (by the host, or with
``pip install 'sanic-chat[openapi]'``), :func:`describe` hands the
description to ``sanic_ext.openapi.definition``, which stores it per
handler; it is read only if the app serves an OpenAPI document, which is
the app's choice. Without sanic-ext, :func:`describe` returns the handler
untouched and nothing of sanic-ext is imported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import PydanticDeprecatedSince20

try:
    from sanic_ext import openapi
except ImportError:  # the usual case: the host does not use sanic-ext
    openapi = None  # type: ignore[assignment]

TAG = "chat"
TAG_DESCRIPTION = (
    "sanic-chat: the chat WebSocket, its HTTP API and its metrics "
    "(https://github.com/sanic-chat/sanic-chat)"
)
# The security scheme of the routes that need the system permission.
API_KEY_SCHEME = "chatApiKey"

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def describe(
    handler: _Handler,
    *,
    summary: str,
    description: str | None = None,
    answers: Mapping[int, str] | None = None,
    query: Sequence[tuple[str, type]] = (),
    body: type | None = None,
    secured: bool = False,
) -> _Handler:
    """Describe ``handler`` for sanic-ext's OpenAPI, tagged ``chat``.

    A no-op without sanic-ext. ``answers`` maps each status to what it
    means (JSON bodies); ``query`` names the query parameters and their
    types; ``secured`` marks routes that need the system permission.
    """
    if openapi is None:
        return handler
    kwargs: dict[str, Any] = {}
    if answers:
        # ``openapi.Object()``, not ``dict``: sanic-ext would describe the
        # class ``dict`` itself, its methods as properties ("clear",
        # "copy", ...), at about 15 ms per answer and per app.
        kwargs["response"] = [
            openapi.definitions.Response(
                {"application/json": openapi.Object()},
                status=code,
                description=text,
            )
            for code, text in answers.items()
        ]
    if query:
        kwargs["parameter"] = [
            openapi.definitions.Parameter(name, kind, "query")
            for name, kind in query
        ]
    if body is not None:
        kwargs["body"] = {"application/json": body}
    if secured:
        kwargs["secured"] = {API_KEY_SCHEME: []}
    with _quiet_pydantic_v1_schema():
        described: _Handler = openapi.definition(
            summary=summary, description=description, tag=TAG, **kwargs
        )(handler)
    return described


@contextmanager
def _quiet_pydantic_v1_schema() -> Iterator[None]:
    """Hide sanic-ext 24.12's call of pydantic's deprecated ``schema()``.

    sanic-ext before 25.12 describes a model body with ``Model.schema()``,
    which warns ``PydanticDeprecatedSince20`` at every registration. The
    filter only lives while our decorator runs; the host's own filters
    are left as they were (raising the floor to sanic-ext 25.12 would
    force Sanic 25.12 and drop the 24.12 LTS).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            "The `schema` method is deprecated",
            category=PydanticDeprecatedSince20,
        )
        yield


def complete(ext: Any) -> None:
    """Add what the operations refer to to ``ext``'s OpenAPI document.

    The ``chat`` tag's description (unless the app described that tag
    itself) and the ``X-API-Key`` security scheme. ``ext`` is the app's
    ``sanic_ext.Extend``.
    """
    spec = ext.openapi
    if TAG not in spec.tags:
        spec.tag(TAG, TAG_DESCRIPTION)
    if not spec.has_component("securitySchemes", API_KEY_SCHEME):
        spec.add_security_scheme(
            API_KEY_SCHEME,
            "apiKey",
            location="header",
            name="X-API-Key",
            description="CHAT_API_KEY; a token with the chat_admin claim "
            "works too (Authorization: Bearer)",
        )
