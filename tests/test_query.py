"""The plugin's query parsing gives what Sanic's ``request.args`` gives."""

from __future__ import annotations

import random
from urllib.parse import parse_qs

import pytest

from sanic_chat.query import query_value, query_values

QUERIES = [
    "",
    "room=lobby",
    "room=a&room=b&room=a",
    "room=&room=x",  # blank values are dropped
    "token=abc.def.ghi&room=dev%40123",
    "%74oken=encoded-key&room=r",  # a percent-encoded key
    "room=caf%C3%A9&name=J%C3%BCrgen+M",  # UTF-8, '+' as space
    "room=%FF%FEbad",  # invalid UTF-8: replaced
    "username=x&name=",  # "name" inside another key; a blank name
    "a=1;room=semi",  # ';' is not a separator
    "room",  # no '='
    "&&room=a&=b&room==c&&",  # empty pairs and keys, '=' in a value
    "ro+om=x&room=a+b%2Bc&room=%zz&room=%2",  # '+' in keys, bad escapes
    "room=%F0%9F%98%80&token=a%26b%3Dc",  # emoji; escaped '&' and '='
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("name", ["room", "token", "name"])
def test_values_are_what_sanics_args_hold(query: str, name: str) -> None:
    # What Sanic's request.args is built from (Request.get_args).
    sanic = parse_qs(query, errors="replace").get(name, [])
    assert query_values(query, name) == sanic
    assert query_value(query, name) == (sanic[0] if sanic else None)


def test_the_fast_refusal_cannot_miss_an_encoded_key() -> None:
    assert query_value("%6Eame=Ann", "name") == "Ann"
    assert query_value("room=lobby", "token") is None


def test_random_queries_parse_as_sanics_args_do() -> None:
    rng = random.Random(17)
    alphabet = ["room", "name", "token", "=", "&", "+", "%", "%2", "%41",
                "%C3%A9", "%FF", "a", " ", ";", "r%6Fom"]  # fmt: skip
    for _ in range(3000):
        query = "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 12))
        )
        for name in ("room", "name", "token"):
            sanic = parse_qs(query, errors="replace").get(name, [])
            assert query_values(query, name) == sanic, query
