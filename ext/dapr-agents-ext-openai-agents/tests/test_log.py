"""The storage format without I/O: encoding, validation, and how the head follows the pages."""

from __future__ import annotations

import json

import pytest

from dapr_agents.ext.openai_agents._log import (
    PART_SIZE,
    Garbage,
    Head,
    Keys,
    decode_page,
    decode_parts,
    is_expired,
    make_page,
    split_parts,
)


def test_keys() -> None:
    keys = Keys("user-1")
    assert keys.head == "user-1:head"
    assert keys.page("abc", 7) == "user-1:page:abc:7"
    assert keys.part("tok", 0) == "user-1:part:tok:0"


def test_page_round_trip_splices_items_verbatim() -> None:
    items_json = json.dumps([{"role": "user", "content": "é"}], ensure_ascii=False, separators=(",", ":"))
    page, value = make_page(base=3, count=1, prev=1, prev_exp=None, exp=99, items_json=items_json)
    assert items_json.encode() in value
    decoded = decode_page(value, 2)
    assert (decoded.base, decoded.count, decoded.prev, decoded.exp, decoded.items) == (
        3,
        1,
        1,
        99,
        [{"role": "user", "content": "é"}],
    )
    assert decoded.size == page.size == len(value)


def test_head_follows_appends_pops_and_replacements() -> None:
    head = Head(gen="g")
    first, _ = make_page(base=0, count=2, prev=-1, prev_exp=None, exp=10, items_json="[1,2]")
    head = head.advance(0, first)
    assert (head.next, head.count, head.last, head.last_exp) == (1, 2, 0, 10)
    pop, _ = make_page(base=1, count=0, prev=0, prev_exp=10, exp=20, items_json=None)
    head = head.advance(1, pop)
    assert (head.next, head.count, head.last, head.last_exp) == (2, 1, 0, 10)
    big, _ = make_page(base=1, count=3, prev=0, prev_exp=10, exp=30, items_json=None, parts=("tok", 2))
    head = head.advance(2, big)
    assert (head.next, head.count, head.last, head.big) == (3, 4, 2, (("tok", 2),))
    assert Head.decode(head.encode()) == head
    with pytest.raises(ValueError, match="does not follow"):
        head.advance(5, big)
    beyond, _ = make_page(base=9, count=1, prev=2, prev_exp=None, exp=None, items_json="[1]")
    with pytest.raises(ValueError, match="beyond"):
        head.advance(3, beyond)


def test_head_with_garbage_round_trips() -> None:
    head = Head(gen="new", gc=(Garbage("old", 4, (("t", 3),)),))
    assert Head.decode(head.encode()) == head


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"v":2,"base":0,"count":0,"prev":-1}', "format version 2"),
        (b'{"v":1,"base":0,"count":1,"prev":-1,"items":[]}', "declares 1 items but holds 0"),
        (b'{"v":1,"base":1,"count":1,"prev":-1,"items":[1]}', "inconsistent page header"),
        (b'{"v":1,"base":0,"count":1,"prev":3,"items":[1]}', "inconsistent page header"),
        (b'{"v":1,"base":"0","count":1,"prev":-1,"items":[1]}', "'base' must be an integer"),
        (b'{"v":1,"base":0,"count":1,"prev":-1,"parts":["t",0]}', "bad 'parts'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_pages_are_described(value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_page(value, 3)


@pytest.mark.parametrize(
    "value",
    [
        b'{"v":1,"gen":"g","next":1,"count":0,"last":0}',
        b'{"v":1,"gen":"","next":0}',
        b'{"v":1,"gen":"g","gc":[1]}',
    ],
)
def test_bad_heads_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        Head.decode(value)


def test_parts_split_anywhere_and_join_back() -> None:
    data = json.dumps(["é" * PART_SIZE], ensure_ascii=False).encode()
    chunks = split_parts(data)
    assert len(chunks) == 3 and all(len(chunk) <= PART_SIZE for chunk in chunks)
    assert decode_parts(chunks, 1) == ["é" * PART_SIZE]
    with pytest.raises(ValueError, match="declare 2 items"):
        decode_parts(chunks, 2)


def test_expiry_has_a_tolerance() -> None:
    assert not is_expired(None, 1e12)
    assert is_expired(100, 100)
    assert is_expired(104, 100)
    assert not is_expired(106, 100)
