"""SASL mechanisms as pure objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core import (
    CramMD5,
    LocalProtocolError,
    Login,
    Plain,
    RemoteProtocolError,
    SASLMechanism,
    XOAuth2,
    choose_mechanism,
)
from smtp_core._sasl import credentials_mechanism, decode_challenge, encode_response


def test_plain() -> None:
    assert Plain("tim", "tanstaaf").initial_response() == b"\0tim\0tanstaaf"
    assert Plain("u", "p", authzid="admin").initial_response() == b"admin\0u\0p"
    with pytest.raises(RemoteProtocolError):
        Plain("u", "p").respond(b"")
    with pytest.raises(LocalProtocolError, match="NUL"):
        Plain("u\0x", "p")


def test_cram_md5_rfc2195_vector() -> None:
    mech = CramMD5("tim", "tanstaaftanstaaf")
    assert mech.initial_response() is None
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert mech.respond(challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(RemoteProtocolError):
        mech.respond(challenge)
    with pytest.raises(RemoteProtocolError, match="empty"):
        CramMD5("a", "b").respond(b"")


def test_login_initial_response() -> None:
    mech = Login("alice", "pw")
    assert mech.initial_response() == b"alice"
    assert mech.respond(b"Password:") == b"pw"
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"Password:")


def test_login_server_asks_username_first() -> None:
    mech = Login("alice", "pw")
    mech.initial_response()
    assert mech.respond(b"Username:") == b"alice"
    assert mech.respond(b"Password:") == b"pw"
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"Username:")


def test_xoauth2() -> None:
    mech = XOAuth2("alice@example.org", "tok")
    assert mech.initial_response() == b"user=alice@example.org\x01auth=Bearer tok\x01\x01"
    assert mech.respond(b'{"status":"401"}') == b""
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"again")
    with pytest.raises(LocalProtocolError):
        XOAuth2("a", "t\x01")


def test_decode_challenge() -> None:
    assert decode_challenge("UGFzc3dvcmQ6") == b"Password:"
    assert decode_challenge("") == b""
    assert decode_challenge("  UGFzc3dvcmQ6 ") == b"Password:"
    for bad in ("not base64!", "UGFzc3dvcmQ", "é"):
        with pytest.raises(RemoteProtocolError, match="invalid base64"):
            decode_challenge(bad)
    assert encode_response(b"Password:") == "UGFzc3dvcmQ6"


@given(st.text(max_size=30).filter(lambda s: "\0" not in s and "\x01" not in s))
def test_secrets_never_in_repr(tail: str) -> None:
    secret = "S3CR3T-" + tail
    for mech in (Plain("user", secret), Login("user", secret), CramMD5("user", secret), XOAuth2("user", secret)):
        assert "<redacted>" in repr(mech)
        assert "S3CR3T" not in repr(mech) and "S3CR3T" not in str(mech)


def test_choose_mechanism() -> None:
    assert choose_mechanism(["LOGIN", "PLAIN", "CRAM-MD5"]) == "CRAM-MD5"
    assert choose_mechanism(["login", "plain"]) == "PLAIN"
    assert choose_mechanism(["login"]) == "LOGIN"
    assert choose_mechanism(["GSSAPI"]) is None
    assert choose_mechanism(["LOGIN", "PLAIN"], preference=["LOGIN", "PLAIN"]) == "LOGIN"


def test_credentials_mechanism() -> None:
    assert isinstance(credentials_mechanism("cram-md5", "u", "p"), CramMD5)
    with pytest.raises(LocalProtocolError):
        credentials_mechanism("GSSAPI", "u", "p")


def test_user_mechanism_plugs_in() -> None:
    class External(SASLMechanism):
        name = "EXTERNAL"

        def initial_response(self) -> bytes | None:
            return b""

        def respond(self, challenge: bytes) -> bytes:
            raise RemoteProtocolError("no challenge expected")

    mech = External()
    assert mech.initial_response() == b""
