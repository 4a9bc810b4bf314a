"""Stop strings are held back until they can no longer match; UTF-8 is reassembled."""

from __future__ import annotations

from slmkit.engine.base import FinishReason
from slmkit.engine.stops import SequenceEnd, StopMatcher, Utf8Stream


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


def test_stop_split_over_pieces_never_leaks() -> None:
    assert _run(["END"], ["abc E", "N", "D more"]) == ("abc ", True)


def test_partial_match_released_when_it_fails() -> None:
    assert _run(["END"], ["abc E", "N", "x"]) == ("abc ENx", False)


def test_held_text_released_at_flush() -> None:
    assert _run(["END"], ["abc EN"]) == ("abc EN", False)


def test_earliest_of_several_stops_wins() -> None:
    assert _run(["zz", "b"], ["aazzb"]) == ("aa", True)


def test_no_stops_passes_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("hello") == ("hello", False)


def test_text_before_held_prefix_is_released_at_once() -> None:
    matcher = StopMatcher(["<|end|>"])
    assert matcher.feed("hello <|e") == ("hello ", False)


def test_utf8_split_bytes() -> None:
    stream = Utf8Stream()
    data = "é😀".encode()
    assert stream.feed(data[:1]) == ""
    assert stream.feed(data[1:3]) == "é"
    assert stream.feed(data[3:]) == "😀"
    assert stream.flush() == ""


def test_utf8_invalid_tail_replaced_at_flush() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"ok\xe2\x82") == "ok"
    assert stream.flush() == "\ufffd"


def test_sequence_end_rules_shared_by_both_engines() -> None:
    end = SequenceEnd(["END"], max_tokens=3, context_length=100)
    assert end.step("abc E", generated=1, held=10) == ("abc ", None)  # "E" held back
    assert end.step("ND!", generated=2, held=11) == ("", FinishReason.STOP)
    end = SequenceEnd(["END"], max_tokens=3, context_length=100)
    assert end.step("x", 2, 10) == ("x", None)
    assert end.step("E", 3, 11, flush=lambda: "N") == ("EN", FinishReason.LENGTH)  # max_tokens: flushed
    end = SequenceEnd([], max_tokens=None, context_length=12)
    assert end.step("y", 1, 11) == ("y", FinishReason.LENGTH)  # the context is full
    end = SequenceEnd(["END"], max_tokens=None, context_length=100)
    assert end.step("EN", 1, 1) == ("", None)
    assert end.end(FinishReason.STOP, tail="D") == ("", FinishReason.STOP)  # the tail completes a stop
    end = SequenceEnd(["END"], max_tokens=None, context_length=100)
    assert end.step("EN", 1, 1) == ("", None)
    assert end.end(FinishReason.STOP) == ("EN", FinishReason.STOP)
