"""RFC 6455 framing of server-to-client text frames, built once.

A frame from a server is never masked and, without extensions (Sanic
negotiates none), is the same bytes for every recipient. So a broadcast
is framed once per process and the same ``bytes`` object is written to
every member's socket, instead of each socket encoding and framing it
again under a lock.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(text: str) -> bytes:
    """Return ``text`` as one complete, unmasked WebSocket text frame."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 65536:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


def frame_text(frame: bytes) -> str:
    """Return the text carried by a frame made by :func:`text_frame`."""
    size = frame[1] & 0x7F
    start = 2 if size < 126 else 4 if size == 126 else 10
    return frame[start:].decode("utf-8")


def frame_texts(data: bytes) -> list[tuple[str, int]]:
    """Split frames made by :func:`text_frame` and written together.

    Returns each frame's text and its size in bytes: the portable
    transport, which can only send text, takes frames apart again.
    """
    texts = []
    view = memoryview(data)
    start = 0
    end = len(data)
    while start < end:
        size = data[start + 1] & 0x7F
        if size < 126:
            head = 2
        elif size == 126:
            head, size = 4, struct.unpack_from("!H", data, start + 2)[0]
        else:
            head, size = 10, struct.unpack_from("!Q", data, start + 2)[0]
        stop = start + head + size
        texts.append((str(view[start + head : stop], "utf-8"), stop - start))
        start = stop
    return texts
