"""Every fuzz corpus file, through the same harness functions the atheris targets run.

The corpus (fuzz/corpus/<target>/) holds sessions captured from real servers, hand-written
malformed transcripts, header values, and any reproducer a fuzzing run ever found: each
must keep satisfying its target's invariant. ``ok-`` files must also play without a
protocol error (or, for headers, be sent), and ``bad-`` files must end in one raised
because of the server's bytes (or be refused).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.harness import ACTIONS, COMMANDS, check_connection, check_header, check_replies
from smtp_core import ConnectionClosed, Greeting, RemoteProtocolError

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def corpus(target: str) -> list[Path]:
    return sorted(path for path in (CORPUS / target).iterdir() if path.is_file())


def ids(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


REPLIES = corpus("replies")
CONNECTION = corpus("connection")
HEADERS = corpus("headers")


def test_corpus_has_real_servers_and_malformed_replies() -> None:
    for target in (REPLIES, CONNECTION):
        names = ids(target)
        for server in ("aiosmtpd", "postfix", "exim", "dovecot"):
            assert any(name.startswith(f"ok-{server}-") for name in names), server
        assert sum(name.startswith("bad-") for name in names) >= 10


@pytest.mark.parametrize("path", REPLIES, ids=ids(REPLIES))
def test_replies_corpus(path: Path) -> None:
    replies, error = check_replies(path.read_bytes(), byte_at_a_time=True)
    if path.name.startswith("ok-"):
        assert error is None
        assert replies
    elif path.name.startswith("bad-"):
        assert error is RemoteProtocolError


@pytest.mark.parametrize("path", HEADERS, ids=ids(HEADERS))
def test_headers_corpus(path: Path) -> None:
    written = check_header(path.read_bytes())
    if path.name.startswith("ok-"):
        assert written is not None  # sent
    elif path.name.startswith("bad-"):
        assert written is None  # refused


@pytest.mark.parametrize("path", CONNECTION, ids=ids(CONNECTION))
def test_connection_corpus(path: Path) -> None:
    data = path.read_bytes()
    events, error = check_connection(data)
    script = data.partition(b"\n")[0]
    if path.name.startswith("ok-"):
        assert error is None, error
        assert isinstance(events[0], Greeting)
        if b"Q" in script:
            assert events[-1] == ConnectionClosed(expected=True)
    elif path.name.startswith("bad-"):
        # The server's bytes are at fault, not the script.
        assert isinstance(error, RemoteProtocolError), error


def test_captured_sessions_are_parsed_as_the_servers_meant() -> None:
    events, error = check_connection((CORPUS / "connection" / "ok-postfix-8bitmime-dsn-refused").read_bytes())
    assert error is None
    codes = [event.reply.code for event in events if hasattr(event, "reply")]
    assert codes == [220, 250, 250, 554, 250, 354, 250, 221]
    events, error = check_connection((CORPUS / "connection" / "ok-dovecot-lmtp").read_bytes())
    assert error is None
    final = [event for event in events if hasattr(event, "reply") and event.reply.code in (250, 550)][-1]
    assert str(final.reply.enhanced_status) == "2.0.0"


def test_every_byte_is_an_action() -> None:
    assert len(ACTIONS) == 256
    assert all(callable(action) for action in ACTIONS)
    assert {key.decode() for key in COMMANDS} <= {chr(value) for value in range(128)}


def test_harness_fails_on_other_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in the code under test escapes the harness: the fuzzer and this suite see it."""
    from fuzz import harness

    def broken(self: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(harness.ReplyParser, "next_reply", broken)
    with pytest.raises(KeyError):
        check_replies(b"\n250 ok\r\n")
    monkeypatch.setattr(harness.ClientConnection, "next_event", broken)
    with pytest.raises(KeyError):
        check_connection(b">\n220 ok\r\n")


def test_harness_fails_when_chunking_changes_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    from fuzz import harness

    real_feed = harness.ReplyParser.feed

    def feed_dropping_single_bytes(self: harness.ReplyParser, data: bytes) -> None:
        real_feed(self, b"" if len(data) == 1 and data == b"2" else data)

    assert check_replies(b"e\n250-a\r\n250 2.0.0 b\r\n")[0][0].lines == ("a", "2.0.0 b")
    monkeypatch.setattr(harness.ReplyParser, "feed", feed_dropping_single_bytes)
    with pytest.raises(AssertionError, match="byte at a time"):
        check_replies(b"e\n250-a\r\n250 2.0.0 b\r\n", byte_at_a_time=True)
