"""Prebuilt frames are exactly what the websockets library would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from sanic_chat.wire import frame_text, frame_texts, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_the_reference_implementation(size: int) -> None:
    text = ("é" * size)[:size] if size % 2 else "x" * size
    ours = text_frame(text)
    reference = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert ours == reference
    reader = StreamReader()
    reader.feed_data(ours)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert frame.data.decode() == text
    assert frame_text(ours) == text


def test_frames_written_together_split_back_into_their_texts() -> None:
    texts = ["", "a", "é" * 100, "x" * 200, "y" * 70000, "z"]
    frames = [text_frame(t) for t in texts]
    assert frame_texts(b"".join(frames)) == [
        (t, len(f)) for t, f in zip(texts, frames)
    ]
