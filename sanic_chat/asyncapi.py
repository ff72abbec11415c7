"""The WebSocket protocol as an AsyncAPI 3.0 document, from the frames.

:func:`document` turns the ``TypedDict`` shapes of
:mod:`sanic_chat.frames` (the ones :mod:`sanic_chat.protocol` builds and
checks) into an AsyncAPI 3.0.0 document: one channel (the WebSocket
route), the client's requests as what the server receives, its frames as
what it sends, JSON Schema payloads. :func:`typescript` renders the same
document's schemas as TypeScript declarations. So the protocol, the
document and the declarations cannot drift apart: the tests hold each to
the next.

The blueprint serves the document at ``<url_prefix>`` +
``CHAT_ASYNCAPI_PATH`` (:class:`Published`); ``python -m
sanic_chat.asyncapi`` prints it, ``--dts`` the TypeScript.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, Required, Union, is_typeddict

from . import frames
from .__about__ import __version__
from .assets import Asset
from .config import ChatConfig

Schema = dict[str, Any]

_REF = "#/components/schemas/"
_DOCS = "https://github.com/sanic-chat/sanic-chat/blob/main/docs/protocol.md"
_PRIMITIVES: dict[object, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean",
    type(None): "null",
}  # fmt: skip


def document(config: ChatConfig | None = None, url_prefix: str = "") -> Schema:
    """Build the AsyncAPI 3.0.0 document of the chat protocol.

    Args:
        config: The app's settings: the channel's address comes from
            ``path`` (under ``url_prefix``), the text limit from
            ``max_text_length``. Default: the default settings.
        url_prefix: The blueprint's prefix when it was registered with
            one other than ``config.url_prefix``.
    """
    config = config or ChatConfig()
    address = (url_prefix or config.url_prefix).rstrip("/") + config.path
    schemas = _Schemas(config)
    server = [schemas.component(f) for f in frames.SERVER_FRAMES]
    client = [schemas.component(f) for f in frames.CLIENT_FRAMES]
    messages = {name: _message(schemas.all[name]) for name in server + client}
    messages["PlainText"] = _PLAIN_TEXT
    channel_messages = {
        name: {"$ref": f"#/components/messages/{name}"} for name in messages
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "sanic-chat WebSocket protocol",
            "version": __version__,
            "description": "Protocol v1 of sanic-chat: UTF-8 JSON text "
            "frames, one object each with a `type`. Clients ignore fields "
            "they do not know; the server ignores unknown fields of "
            "client frames. An HTTP refusal (400, 401, 403, 405, 426, "
            "429, 503) comes before any socket exists.",
            "license": {"name": "MIT"},
            "externalDocs": {"url": _DOCS},
        },
        "defaultContentType": "application/json",
        "servers": {
            name: {
                "host": "{host}",
                "protocol": protocol,
                "description": description,
                "variables": {
                    "host": {
                        "default": "localhost:8000",
                        "description": "host[:port] the app is served at",
                    }
                },
                "security": [
                    {"$ref": f"#/components/securitySchemes/{scheme}"}
                    for scheme in _SECURITY
                ],
            }
            for name, protocol, description in (
                ("production", "wss", "Behind TLS"),
                ("local", "ws", "Without TLS (development)"),
            )
        },
        "channels": {
            "chat": {
                "address": address,
                "title": "The chat WebSocket",
                "description": "Connect with GET and Upgrade: websocket; "
                "the first frame is welcome, then joined per room.",
                "messages": channel_messages,
                "bindings": {"ws": _WS_BINDING},
            }
        },
        "operations": {
            "receiveRequests": _operation(
                "receive", "What clients send", [*client, "PlainText"]
            ),
            "sendFrames": _operation("send", "What the server sends", server),
        },
        "components": {
            "schemas": schemas.all,
            "messages": messages,
            "securitySchemes": _SECURITY,
        },
    }


def _operation(action: str, summary: str, names: Sequence[str]) -> Schema:
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": "#/channels/chat"},
        "messages": [
            {"$ref": f"#/channels/chat/messages/{name}"} for name in names
        ],
    }


def _message(schema: Schema) -> Schema:
    name = schema["title"]
    message = {
        "name": schema["properties"]["type"]["const"],
        "title": name,
        "summary": schema["description"],
        "payload": {"$ref": _REF + name},
    }
    if name in _EXAMPLES:
        message["examples"] = [{"payload": _EXAMPLES[name]}]
    return message


_ANN = {"id": "u1", "name": "Ann"}
# One example per frame, from docs/protocol.md (the tests check each).
_EXAMPLES: dict[str, Schema] = {
    "WelcomeFrame": {
        "type": "welcome", "protocol": 1, "user": _ANN,
        "rooms": ["lobby"], "inbox": "@u1",
    },
    "JoinedFrame": {
        "type": "joined", "room": "dev", "user": _ANN, "recovered": True,
        "last_read": None, "unread": 0,
    },
    "LeftFrame": {"type": "left", "room": "dev", "user": _ANN},
    "MessageFrame": {
        "id": "3f9a1c-43", "type": "message", "room": "dev", "user": _ANN,
        "text": "see above", "ts": 1795655007000,
        "meta": {"reply_to": "3f9a1c-41"},
    },
    "EditedFrame": {
        "type": "edited", "room": "dev", "id": "3f9a1c-41",
        "text": "hello, fixed", "user": _ANN, "edited_ts": 1795655009420,
    },
    "DeletedFrame": {
        "type": "deleted", "room": "dev", "id": "3f9a1c-42", "user": _ANN,
        "ts": 1795655010000,
    },
    "AckFrame": {
        "type": "ack", "ref": "c-17", "id": "3f9a1c-42", "room": "dev"
    },
    "ErrorFrame": {
        "type": "error", "code": "forbidden",
        "message": "links are not allowed here", "ref": "c-17",
        "room": "dev",
    },
    "JoinRequest": {"type": "join", "room": "dev", "since": "3f9a1c-41"},
    "MessageRequest": {
        "type": "message", "room": "dev", "text": "hello", "ref": "c-17"
    },
    "DirectMessageRequest": {
        "type": "message", "to": "bob", "text": "psst", "ref": "c-18"
    },
    "HistoryRequest": {
        "type": "history", "room": "dev", "limit": 50,
        "before": "3f9a1c-41",
    },
}  # fmt: skip


_PLAIN_TEXT = {
    "name": "plain text",
    "title": "PlainText",
    "summary": "A text frame not starting with { (after whitespace) is a "
    "message to the default room",
    "contentType": "text/plain",
    "payload": {"type": "string", "pattern": r"^\s*[^\s{]"},
}

_WS_BINDING = {
    "method": "GET",
    "query": {
        "type": "object",
        "properties": {
            "room": {
                "type": "string",
                "description": "Repeatable: NAME, or NAME@LAST_ID to "
                "replay what came after that id",
            },
            "token": {"type": "string", "description": "A token"},
            "name": {
                "type": "string",
                "description": "A guest's display name, 1-32 characters",
            },
        },
    },
    "bindingVersion": "0.1.0",
}

_SECURITY = {
    "subprotocol": {
        "type": "httpApiKey",
        "in": "header",
        "name": "Sec-WebSocket-Protocol",
        "description": "For browsers: offer the subprotocols "
        "`sanic-chat, bearer.<token>`; the server answers `sanic-chat` "
        "and never echoes the token.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <token>",
    },
    "tokenQuery": {"type": "httpApiKey", "in": "query", "name": "token"},
    "tokenCookie": {
        "type": "httpApiKey",
        "in": "cookie",
        "name": "chat_token",
    },
}


class _Schemas:
    """JSON Schemas of TypedDicts, each a component, by class name."""

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        self.all: dict[str, Schema] = {}

    def component(self, shape: type) -> str:
        """Add ``shape``'s schema (and those it uses); return its name."""
        name = shape.__name__
        if name not in self.all:
            self.all[name] = {}  # taken, for shapes that refer to it
            hints = typing.get_type_hints(shape, include_extras=True)
            properties = {key: self.of(hint) for key, hint in hints.items()}
            keys: frozenset[str] = shape.__required_keys__  # type: ignore[attr-defined]
            required = [key for key in hints if key in keys]
            self.all[name] = {
                "title": name,
                "description": _first_line(shape.__doc__),
                "type": "object",
                "properties": properties,
                "required": required,
            }
        return name

    def of(self, hint: Any) -> Schema:
        """The schema of one annotation."""
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (NotRequired, Required):
            return self.of(args[0])
        if origin is typing.Annotated:
            return self._constrained(self.of(args[0]), hint.__metadata__)
        if is_typeddict(hint):
            return {"$ref": _REF + self.component(hint)}
        if hint in _PRIMITIVES:
            return {"type": _PRIMITIVES[hint]}
        if hint is Any:
            return {}
        if origin is Literal:
            kind = _PRIMITIVES[type(args[0])]
            if len(args) == 1:
                return {"type": kind, "const": args[0]}
            return {"type": kind, "enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(arg) for arg in args]}
        if origin in (Sequence, list):
            return {"type": "array", "items": self.of(args[0])}
        if origin in (Mapping, dict):
            values = self.of(args[1])
            return {"type": "object", "additionalProperties": values or True}
        raise TypeError(f"no JSON Schema for {hint!r}")

    def _constrained(self, schema: Schema, metadata: Sequence[Any]) -> Schema:
        for wire in metadata:
            if not isinstance(wire, frames.Wire):
                continue
            if wire.ref is not None:
                schema = {"$ref": _REF + wire.ref}
                self.component(getattr(frames, wire.ref))
                continue
            limit = wire.max_length
            if wire.setting is not None:
                limit = getattr(self.config, wire.setting)
            for key, value in (
                ("description", wire.description or None),
                ("pattern", wire.pattern),
                ("minLength", wire.min_length),
                ("maxLength", limit),
                ("minimum", wire.minimum),
                ("enum", list(wire.enum) or None),
            ):
                if value is not None:
                    schema[key] = value
        return schema


def _first_line(doc: str | None) -> str:
    text = (doc or "").strip().split("\n\n")[0].replace("\n", " ")
    return text.replace("``", "`")


# --------------------------------------------------------------------------
# TypeScript


def typescript(doc: Schema) -> str:
    """Render ``doc``'s schemas as TypeScript declarations.

    One interface per component schema (the frames, and ``User``), then
    ``ServerFrame`` and ``ClientFrame``, the unions of what the server
    sends and what a client sends as JSON. This is the block between
    ``// BEGIN FRAMES`` and ``// END FRAMES`` of ``static/client.d.ts``.
    """
    lines: list[str] = []
    for name, schema in doc["components"]["schemas"].items():
        lines.append(f"/** {schema['description']} */")
        lines.append(f"export interface {name} {{")
        required = set(schema["required"])
        for key, field in schema["properties"].items():
            if field.get("description"):
                lines.append(f"  /** {field['description']} */")
            optional = "" if key in required else "?"
            lines.append(f"  {key}{optional}: {_ts(field)};")
        lines.append("}")
        lines.append("")
    for union, operation in (
        ("ServerFrame", "sendFrames"),
        ("ClientFrame", "receiveRequests"),
    ):
        names = [
            ref["$ref"].rsplit("/", 1)[1]
            for ref in doc["operations"][operation]["messages"]
        ]
        members = [
            doc["components"]["messages"][name]["payload"] for name in names
        ]
        lines.append(f"export type {union} =")
        parts = [_ts(p) for p in members if "$ref" in p]
        lines.extend(f"  | {part}" for part in parts[:-1])
        lines.append(f"  | {parts[-1]};")
    return "\n".join(lines) + "\n"


def _ts(schema: Schema) -> str:
    if "$ref" in schema:
        return str(schema["$ref"].rsplit("/", 1)[1])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_ts(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        item = _ts(schema["items"])
        return f"({item})[]" if " | " in item else f"{item}[]"
    if kind == "object":
        values = schema.get("additionalProperties", True)
        value = "unknown" if values is True else _ts(values)
        return f"Record<string, {value}>"
    return {
        "string": "string", "integer": "number", "number": "number",
        "boolean": "boolean", "null": "null",
    }.get(kind or "", "unknown")  # fmt: skip


def published(doc: Schema) -> Asset:
    """The document as the blueprint serves it: encoded once, with ETag.

    ``no-cache``: a client revalidates every time and gets a 304 until
    the app's protocol (its settings) changes.
    """
    body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    return Asset.of(body, "application/json", "no-cache")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sanic_chat.asyncapi [--dts]``: print the document."""
    parser = argparse.ArgumentParser(
        prog="python -m sanic_chat.asyncapi",
        description="Print the AsyncAPI 3.0 document of the chat protocol "
        "(default settings), or its TypeScript frame declarations.",
    )
    parser.add_argument(
        "--dts",
        action="store_true",
        help="print the TypeScript declarations instead",
    )
    args = parser.parse_args(argv)
    doc = document()
    if args.dts:
        print(typescript(doc), end="")
    else:
        print(json.dumps(doc, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
