"""DATA/BDAT content encoding: dot-stuffing, line endings, no early terminator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core import DataEncoder, LineNormalizer, LocalProtocolError, unstuff
from smtp_core._content import normalize_line_endings


def encode(chunks: list[bytes], **kwargs: str) -> bytes:
    encoder = DataEncoder(**kwargs)  # type: ignore[arg-type]
    return b"".join(encoder.encode(c) for c in chunks) + encoder.finish()


def three_ways(data: bytes) -> bytes:
    whole = encode([data])
    assert encode([data[i : i + 1] for i in range(len(data))]) == whole
    assert encode([data, b""]) == whole
    return whole


@pytest.mark.parametrize(
    "content,wire",
    [
        (b"", b".\r\n"),
        (b"hello", b"hello\r\n.\r\n"),
        (b"hello\r\n", b"hello\r\n.\r\n"),
        (b".starts with dot\r\n", b"..starts with dot\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"bare\rcr", b"bare\r\ncr\r\n.\r\n"),
        (b"bare\nlf", b"bare\r\nlf\r\n.\r\n"),
        (b"\r\r\n", b"\r\n\r\n.\r\n"),
        (b"..", b"...\r\n.\r\n"),
        (b"x\r", b"x\r\n.\r\n"),
    ],
)
def test_examples(content: bytes, wire: bytes) -> None:
    assert three_ways(content) == wire


def test_cr_at_chunk_end() -> None:
    assert encode([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\r", b"b"]) == b"a\r\nb\r\n.\r\n"
    assert encode([b"a\r", b"", b"\n"]) == b"a\r\n.\r\n"


def test_finish_twice() -> None:
    encoder = DataEncoder()
    encoder.finish()
    with pytest.raises(LocalProtocolError):
        encoder.finish()
    with pytest.raises(LocalProtocolError):
        encoder.encode(b"x")


def test_reject_mode() -> None:
    assert encode([b"ok\r\nfine\r\n"], bare_line_endings="reject") == b"ok\r\nfine\r\n.\r\n"
    for bad in ([b"a\nb"], [b"a\rb"], [b"a\r", b"b"], [b"a\r"], [b"\n"]):
        with pytest.raises(LocalProtocolError, match="bare CR"):
            encode(bad, bare_line_endings="reject")


chunkings = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"x", b".")), max_size=12)


@given(chunkings)
def test_unstuff_inverts_and_terminator_only_at_end(chunks: list[bytes]) -> None:
    wire = encode(chunks)
    body = normalize_line_endings(b"".join(chunks))
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    assert unstuff(wire) == body
    # Exactly one terminator, at the very end; no bare CR or LF anywhere.
    assert wire.count(b"\r\n.\r\n") + wire.startswith(b".\r\n") == 1
    assert wire.endswith(b".\r\n")
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")


@given(chunkings, st.data())
def test_chunking_invariance(chunks: list[bytes], data: st.DataObject) -> None:
    joined = b"".join(chunks)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(joined)), max_size=6)))
    pieces = [joined[a:b] for a, b in zip([0, *cuts], [*cuts, len(joined)], strict=True)]
    assert encode(pieces) == encode([joined])


@given(chunkings)
def test_line_normalizer_chunking(chunks: list[bytes]) -> None:
    normalizer = LineNormalizer()
    out = b"".join(normalizer.feed(c) for c in chunks) + normalizer.flush()
    assert out == normalize_line_endings(b"".join(chunks))


def test_unstuff_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        unstuff(b"no terminator")
    with pytest.raises(ValueError):
        unstuff(b"a\r\n.\r\nb\r\n.\r\n")


def test_large_content_is_processed_chunk_by_chunk() -> None:
    encoder = DataEncoder()
    chunk = b".dot line\n" * 6554  # 64 KiB of lines that all need stuffing
    total = 0
    for _ in range(320):  # 20 MiB
        out = encoder.encode(chunk)
        assert len(out) <= 2 * len(chunk)  # each output is about one chunk: memory stays bounded
        total += len(out)
    total += len(encoder.finish())
    assert total == 320 * 6554 * 12 + 3


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"x", b"\r\n")), max_size=6))
def test_line_ending_counts_of_one_message_are_kept_and_right_for_each(parts: list[bytes]) -> None:
    """The SIZE estimate and the encoder share one scan per message, never a stale one."""
    from smtp_core._content import line_ending_counts
    from smtp_core._transaction import content_size

    for data in parts:
        expected = (data.count(b"\r\n"), data.count(b"\r"), data.count(b"\n"))
        assert line_ending_counts(data) == expected
        assert line_ending_counts(data) == expected  # kept: the same object, again
        assert line_ending_counts(bytes(bytearray(data))) == expected  # an equal copy
        wire = normalize_line_endings(data)
        assert content_size(data, bdat=True) == len(wire)
