"""The reply parser and receive buffer; every input is fed whole, byte by byte, and with trailing data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core import EnhancedStatusCode, RemoteProtocolError, Reply, ReplyParser
from smtp_core._buffer import ReceiveBuffer

TRAILER = b"250-next reply st"


def parse_all(chunks: list[bytes], **limits: int) -> list[Reply]:
    parser = ReplyParser(**limits)
    replies = []
    for chunk in chunks:
        parser.feed(chunk)
        while (reply := parser.next_reply()) is not None:
            replies.append(reply)
    return replies


def three_ways(data: bytes, **limits: int) -> list[Reply]:
    """Parse ``data`` whole, one byte at a time, and followed by trailing data; all must agree."""
    whole = parse_all([data], **limits)
    bytewise = parse_all([data[i : i + 1] for i in range(len(data))], **limits)
    trailing = parse_all([data + TRAILER], **limits)
    assert whole == bytewise == trailing
    return whole


def raises_three_ways(data: bytes, match: str, **limits: int) -> None:
    feeds: list[Callable[[], object]] = [
        lambda: parse_all([data], **limits),
        lambda: parse_all([data[i : i + 1] for i in range(len(data))], **limits),
        lambda: parse_all([data + TRAILER], **limits),
    ]
    for feed in feeds:
        with pytest.raises(RemoteProtocolError, match=match):
            feed()


def test_single_line() -> None:
    [reply] = three_ways(b"250 OK\r\n")
    assert (reply.code, reply.lines, reply.message) == (250, ("OK",), "OK")
    assert reply.is_success and str(reply) == "250 OK"


def test_multi_line() -> None:
    [reply] = three_ways(b"250-smtp.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    assert reply.lines == ("smtp.test", "PIPELINING", "SIZE 100")
    assert reply.message == "smtp.test\nPIPELINING\nSIZE 100"


def test_several_replies_in_one_chunk() -> None:
    replies = three_ways(b"250 a\r\n550 b\r\n354 c\r\n")
    assert [r.code for r in replies] == [250, 550, 354]


@pytest.mark.parametrize("data,lines", [(b"250\r\n", ("",)), (b"250 \r\n", ("",)), (b"250-x\r\n250 \r\n", ("x", ""))])
def test_bare_code_lines(data: bytes, lines: tuple[str, ...]) -> None:
    [reply] = three_ways(data)
    assert reply.code == 250 and reply.lines == lines


def test_lf_only_line_endings() -> None:
    [reply] = three_ways(b"250-a\n250 b\n")
    assert reply.lines == ("a", "b")


def test_continuation_with_another_code() -> None:
    raises_three_ways(b"250-a\r\n251 b\r\n", "continuation line has code 251")


@pytest.mark.parametrize(
    "data,match",
    [
        (b"25 short\r\n", "3-digit code"),
        (b"abc text\r\n", "3-digit code"),
        (b"600 too high\r\n", "outside 2xx-5xx"),
        (b"199 too low\r\n", "outside 2xx-5xx"),
        (b"099 zero\r\n", "outside 2xx-5xx"),
        (b"250xtext\r\n", "followed by a space, a hyphen"),
        (b"\r\n", "3-digit code"),
    ],
)
def test_bad_codes(data: bytes, match: str) -> None:
    raises_three_ways(data, match)


def test_invalid_utf8_and_nul_never_raise() -> None:
    [reply] = three_ways(b"250 caf\xe9 \x00 \xff\xfe ok\r\n")
    assert reply.code == 250
    assert "\ufffd" in reply.message and "\x00" in reply.message


def test_utf8_text() -> None:
    [reply] = three_ways("250 Grüße 👋\r\n".encode())
    assert reply.message == "Grüße 👋"


def test_enhanced_codes_only_when_enabled() -> None:
    data = b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n"
    [plain] = three_ways(data)
    assert plain.enhanced_status is None and plain.enhanced_codes == ()
    parser = ReplyParser()
    parser.parse_enhanced_codes = True
    parser.feed(data)
    reply = parser.next_reply()
    assert reply is not None
    assert reply.enhanced_codes == (EnhancedStatusCode(5, 1, 1), EnhancedStatusCode(5, 1, 1))
    assert str(reply.enhanced_status) == "5.1.1"
    assert reply.message == "5.1.1 no such user\n5.1.1 really"  # the text keeps it


@pytest.mark.parametrize("text,expected", [(b"250 2.0.0 ok", "2.0.0"), (b"250 5.0.0 wrong class", None), (b"250 2.0.0x", None), (b"250 2.0", None), (b"250 2.1.10", "2.1.10")])
def test_enhanced_code_must_match_class(text: bytes, expected: str | None) -> None:
    parser = ReplyParser()
    parser.parse_enhanced_codes = True
    parser.feed(text + b"\r\n")
    reply = parser.next_reply()
    assert reply is not None
    assert (str(reply.enhanced_status) if reply.enhanced_status else None) == expected


def test_line_length_limit_without_newline() -> None:
    parser = ReplyParser(max_line_length=100)
    parser.feed(b"250 " + b"x" * 96 + b"\r")
    assert parser.next_reply() is None  # at the limit, the CR's LF may follow
    parser.feed(b"x")
    with pytest.raises(RemoteProtocolError, match="max_line_length"):
        parser.next_reply()


def test_line_length_limit_complete_line() -> None:
    raises_three_ways(b"250 " + b"x" * 200 + b"\r\n", "max_line_length", max_line_length=100)
    three_ways(b"250 " + b"x" * 96 + b"\r\n", max_line_length=100)


def test_lines_per_reply_limit() -> None:
    endless = b"250-x\r\n" * 20
    raises_three_ways(endless, "max_reply_lines", max_reply_lines=10)
    assert len(three_ways(b"250-x\r\n" * 9 + b"250 x\r\n", max_reply_lines=10)[0].lines) == 10


def test_buffer_limit() -> None:
    parser = ReplyParser(max_buffer_size=1000, max_line_length=10_000)
    parser.feed(b"2" * 1000)
    with pytest.raises(RemoteProtocolError, match="max_buffer_size"):
        parser.feed(b"2")


def test_byte_at_a_time_is_linear() -> None:
    """Each new byte is searched once: the buffer remembers where it stopped looking."""
    searched: list[int] = []
    buffer = ReceiveBuffer()
    original = buffer.extract_line

    line = b"250 " + b"x" * 20_000 + b"\r\n"
    for i in range(len(line)):
        buffer.append(line[i : i + 1])
        before = buffer._searched
        result = original()
        searched.append(buffer._searched - before if result is None else 0)
    # Every call advanced the search point by exactly the one new byte.
    assert all(step <= 1 for step in searched)
    assert sum(searched) == len(line) - 1


def test_consumed_bytes_are_dropped() -> None:
    buffer = ReceiveBuffer()
    for _ in range(10_000):
        buffer.append(b"250 ok\r\n")
        assert buffer.extract_line() == b"250 ok"
    assert len(buffer._data) < 8192


def test_many_short_lines_cost_their_bytes_not_an_object_each() -> None:
    """The buffer's memory follows the bytes held (max_buffer_size bounds it), however
    many lines they make: unconsumed lines are not kept as one object each."""
    import tracemalloc

    data = b"ab\n" * (1024 * 1024 // 3)
    tracemalloc.start()
    try:
        buffer = ReceiveBuffer()
        for start in range(0, len(data), 65536):
            buffer.append(data[start : start + 65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(buffer) == len(data)
    assert peak < 3 * len(data), peak


def test_unconsumed_bytes_are_given_back_exactly() -> None:
    buffer = ReceiveBuffer()
    data = b"250-a\r\n250 b\n\r\n354 \rgo\r\npartial\r"
    buffer.append(data[:9])
    buffer.append(data[9:])
    assert len(buffer) == len(data) and buffer.peek(7) == data[:7]
    assert buffer.extract_line() == b"250-a"
    assert buffer.peek(100) == data[7:]
    assert [buffer.extract_line() for _ in range(4)] == [b"250 b", b"", b"354 \rgo", None]
    assert buffer.take_all() == b"partial\r"
    assert not buffer and buffer.peek(1) == b""


@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_bytes_any_chunking_parse_or_remote_error(data: bytes, sizes: list[int]) -> None:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    chunks.append(data[start:])
    try:
        chunked = parse_all(chunks, max_line_length=64, max_reply_lines=5)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            parse_all([data], max_line_length=64, max_reply_lines=5)
        return
    assert chunked == parse_all([data], max_line_length=64, max_reply_lines=5)


def test_repeated_single_line_replies_are_parsed_once() -> None:
    parser = ReplyParser()
    parser.feed(b"250 2.1.0 Ok\r\n250 2.1.0 Ok\r\n")
    first, second = parser.next_reply(), parser.next_reply()
    assert first is second  # immutable, shared
    assert first == Reply(250, ("2.1.0 Ok",))


def test_a_line_parsed_on_one_connection_is_not_parsed_again_on_the_next() -> None:
    replies = []
    for enhanced in (False, False, True, True):
        parser = ReplyParser()
        parser.parse_enhanced_codes = enhanced
        parser.feed(b"250 2.1.0 Sender ok\r\n")
        replies.append(parser.next_reply())
    plain, plain_again, enhanced_reply, enhanced_again = replies
    assert plain is plain_again and enhanced_reply is enhanced_again
    assert plain is not None and plain.enhanced_codes == ()
    assert enhanced_reply is not None and str(enhanced_reply.enhanced_status) == "2.1.0"


def test_enhanced_codes_switch_does_not_reuse_replies_parsed_without_them() -> None:
    parser = ReplyParser()
    parser.feed(b"250 2.1.0 Ok\r\n")
    assert parser.next_reply() == Reply(250, ("2.1.0 Ok",))
    parser.parse_enhanced_codes = True
    parser.feed(b"250 2.1.0 Ok\r\n")
    reply = parser.next_reply()
    assert reply is not None and str(reply.enhanced_status) == "2.1.0"
    parser.parse_enhanced_codes = False
    parser.feed(b"250 2.1.0 Ok\r\n")
    assert parser.next_reply() == Reply(250, ("2.1.0 Ok",))


def test_reply_cache_stays_bounded() -> None:
    parser = ReplyParser()
    for index in range(1000):  # a server sending a different line every time
        parser.feed(b"250 ok %d\r\n" % index)
        reply = parser.next_reply()
        assert reply is not None and reply.lines == (f"ok {index}",)
    assert len(parser._single_line_replies) <= 64


def test_long_reply_lines_are_not_kept() -> None:
    parser = ReplyParser()
    line = b"250 " + b"y" * 4000 + b"\r\n"
    parser.feed(line * 2)
    first, second = parser.next_reply(), parser.next_reply()
    assert first == second and first is not second
    assert line.rstrip(b"\r\n") not in parser._single_line_replies


def _reference_lines(data: bytes) -> list[tuple[bytes, int]]:
    """The lines a receive buffer must give for ``data``, each with the offset after it."""
    lines, start = [], 0
    while (end := data.find(b"\n", start)) >= 0:
        line = data[start:end]
        lines.append((line[:-1] if line.endswith(b"\r") else line, end + 1))
        start = end + 1
    return lines


@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from([b"250 ok", b"354 go", b"", b"a\rb", b"x\n", b"\r"]), max_size=6),
            st.sampled_from([b"", b"\r\n", b"\n", b"\r", b"25"]),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=12,
    )
)
def test_lines_are_the_same_however_chunks_arrive_and_are_read(
    steps: list[tuple[list[bytes], bytes, int]],
) -> None:
    """Chunks of whole CRLF lines arriving into an empty buffer are split at once; the
    lines, their order and the bytes left are those of one search per line ending."""
    buffer = ReceiveBuffer()
    received = b""
    got: list[bytes] = []
    for parts, tail, reads in steps:
        chunk = b"\r\n".join(parts) + (b"\r\n" if parts else b"") + tail
        buffer.append(chunk)
        received += chunk
        for _ in range(reads):
            if (line := buffer.extract_line()) is not None:
                got.append(line)
        expected = _reference_lines(received)
        left = received[expected[len(got) - 1][1] :] if got else received
        assert len(buffer) == len(left) and bool(buffer) == bool(left)
        assert buffer.peek(7) == left[:7]
    while (line := buffer.extract_line()) is not None:
        got.append(line)
    expected = _reference_lines(received)
    assert got == [line for line, _ in expected]
    assert buffer.take_all() == received[expected[-1][1] if expected else 0 :] and not buffer


def test_a_chunk_split_at_once_keeps_its_place_before_later_bytes() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"250 a\r\n250 b\r\n")
    buffer.append(b"354 c\r\n250 d")
    assert len(buffer) == 26 and buffer.peek(9) == b"250 a\r\n25"
    assert buffer.extract_line() == b"250 a"
    assert buffer.peek(100) == b"250 b\r\n354 c\r\n250 d"
    assert [buffer.extract_line() for _ in range(3)] == [b"250 b", b"354 c", None]
    buffer.append(b"\r\n")
    assert buffer.extract_line() == b"250 d" and not buffer


def test_only_short_chunks_into_an_empty_buffer_are_split() -> None:
    """Lines split at once are an object each: at most one short chunk's worth is held
    (the rest waits as bytes), however the server sends them."""
    import tracemalloc

    tracemalloc.start()
    try:
        buffer = ReceiveBuffer()
        for _ in range(100_000):
            buffer.append(b"2\r\n2\r\n")  # short chunks of whole lines, never read
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(buffer) == 600_000
    assert peak < 3 * 600_000, peak
    assert len(buffer._lines) == 2
