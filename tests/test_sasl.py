"""SASL mechanisms as pure objects: known vectors, challenge loops, redaction, selection."""

from __future__ import annotations

import base64
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core._errors import LocalProtocolError, RemoteProtocolError
from smtp_core._sasl import (
    MECHANISMS,
    PREFERENCE,
    CramMD5,
    Login,
    OAuthBearer,
    Plain,
    SASLMechanism,
    ScramSHA256,
    XOAuth2,
    choose_mechanism,
    credentials_mechanism,
    decode_challenge,
    encode_response,
)


def exchange(mech: SASLMechanism, challenges: list[str], *, send_initial: bool = True) -> list[str]:
    """Drive ``mech`` the way the AUTH flow does: base64 challenges in, base64 responses out.

    The first element of the result is the initial response (or "" when none is sent).
    """
    initial = mech.initial_response() if send_initial else None
    sent = ["" if initial is None else encode_response(initial)]
    for text in challenges:
        sent.append(encode_response(mech.respond(decode_challenge(text))))
    return sent


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- PLAIN --------------------------------------------------------------------


def test_plain_initial_response() -> None:
    assert Plain("tim", "tanstaaf").initial_response() == b"\0tim\0tanstaaf"
    assert Plain("u", "p", authzid="admin").initial_response() == b"admin\0u\0p"
    assert Plain(b"u", b"p").initial_response() == b"\0u\0p"
    assert Plain("jörg", "päss").initial_response() == "\0jörg\0päss".encode()
    assert Plain.name == "PLAIN"


def test_plain_challenged_after_initial_response() -> None:
    mech = Plain("u", "p")
    mech.initial_response()
    with pytest.raises(RemoteProtocolError, match="after its initial response"):
        mech.respond(b"")


def test_plain_without_initial_response_answers_empty_challenge_once() -> None:
    mech = Plain("u", "p")
    assert mech.respond(b"") == b"\0u\0p"
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"")
    with pytest.raises(RemoteProtocolError, match="empty challenge"):
        Plain("u", "p").respond(b"what?")


@pytest.mark.parametrize("field", ["username", "password", "authzid"])
def test_plain_rejects_nul(field: str) -> None:
    kwargs = {"username": "u", "password": "p", "authzid": "", field: "a\0b"}
    with pytest.raises(LocalProtocolError, match=f"PLAIN {field} must not contain NUL"):
        Plain(**kwargs)


def test_credentials_must_be_str_or_bytes() -> None:
    with pytest.raises(TypeError):
        Plain("u", 5)  # type: ignore[arg-type]


# -- CRAM-MD5 -----------------------------------------------------------------


def test_cram_md5_rfc2195_vector() -> None:
    mech = CramMD5("tim", "tanstaaftanstaaf")
    assert mech.initial_response() is None
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert mech.respond(challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(RemoteProtocolError, match="more than once"):
        mech.respond(challenge)


def test_cram_md5_rfc2195_vector_over_base64() -> None:
    # The challenge and response exactly as they appear on the wire in RFC 2195.
    sent = exchange(
        CramMD5("tim", "tanstaaftanstaaf"),
        ["PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"],
    )
    assert sent == ["", "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"]


def test_cram_md5_empty_challenge() -> None:
    with pytest.raises(RemoteProtocolError, match="empty"):
        CramMD5("a", "b").respond(b"")


@given(st.binary(min_size=1, max_size=64), st.text(max_size=20))
def test_cram_md5_is_hmac_md5(challenge: bytes, password: str) -> None:
    expected = hmac.new(password.encode(), challenge, "md5").hexdigest().encode()
    assert CramMD5("user", password).respond(challenge) == b"user " + expected


# -- LOGIN --------------------------------------------------------------------


def test_login_username_as_initial_response() -> None:
    assert exchange(Login("alice", "pw"), [b64(b"Password:")]) == [b64(b"alice"), b64(b"pw")]


def test_login_server_asks_username_first() -> None:
    sent = exchange(Login("alice", "pw"), [b64(b"Username:"), b64(b"Password:")])
    assert sent == [b64(b"alice"), b64(b"alice"), b64(b"pw")]


@pytest.mark.parametrize("prompt", [b"Username:", b"username:", b"USERNAME:", b" User Name\0"])
def test_login_username_prompt_case_insensitive(prompt: bytes) -> None:
    mech = Login("alice", "pw")
    mech.initial_response()
    assert mech.respond(prompt) == b"alice"


def test_login_without_initial_response() -> None:
    sent = exchange(
        Login("alice", "pw"), [b64(b"Username:"), b64(b"Password:")], send_initial=False
    )
    assert sent == ["", b64(b"alice"), b64(b"pw")]


@pytest.mark.parametrize(
    "challenges",
    [
        [b"Password:", b"Password:"],
        [b"Username:", b"Password:", b"Password:"],
        [b"Username:", b"Username:"],  # would loop forever if answered again
        [b"Password:", b"Username:"],
    ],
)
def test_login_extra_rounds_raise(challenges: list[bytes]) -> None:
    mech = Login("alice", "pw")
    mech.initial_response()
    for challenge in challenges[:-1]:
        mech.respond(challenge)
    with pytest.raises(RemoteProtocolError, match="unexpected LOGIN challenge"):
        mech.respond(challenges[-1])


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=8), st.booleans())
def test_login_never_answers_more_than_three_rounds(challenges: list[bytes], initial: bool) -> None:
    mech = Login("alice", "pw")
    answered = 1 if initial and mech.initial_response() is not None else 0
    for challenge in challenges:
        try:
            mech.respond(challenge)
        except RemoteProtocolError:
            break
        answered += 1
    assert answered <= 3


# -- XOAUTH2 ------------------------------------------------------------------


def test_xoauth2() -> None:
    mech = XOAuth2("alice@example.org", "tok")
    assert mech.initial_response() == b"user=alice@example.org\x01auth=Bearer tok\x01\x01"
    error = b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    assert mech.respond(error) == b""
    assert mech.error == error
    with pytest.raises(RemoteProtocolError, match="more than once"):
        mech.respond(error)


@pytest.mark.parametrize(("user", "token"), [("a\x01b", "t"), ("a", "t\x01"), (b"a", b"\x01")])
def test_xoauth2_rejects_ctrl_a(user: str | bytes, token: str | bytes) -> None:
    with pytest.raises(LocalProtocolError, match="must not contain"):
        XOAuth2(user, token)


# -- base64 -------------------------------------------------------------------


def test_decode_challenge() -> None:
    assert decode_challenge("UGFzc3dvcmQ6") == b"Password:"
    assert decode_challenge("") == b""
    assert decode_challenge("   ") == b""
    assert decode_challenge("  UGFzc3dvcmQ6 \t") == b"Password:"
    assert encode_response(b"Password:") == "UGFzc3dvcmQ6"
    assert encode_response(b"") == ""


@pytest.mark.parametrize("bad", ["not base64!", "UGFzc3dvcmQ", "é", "UGFz c3dv", "=", "UGF\nzc3c="])
def test_decode_challenge_rejects_invalid_base64(bad: str) -> None:
    with pytest.raises(RemoteProtocolError, match="invalid base64 in AUTH challenge"):
        decode_challenge(bad)


def test_decode_challenge_error_truncates_text() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_challenge("!" * 5000)
    assert len(str(info.value)) < 100


@given(st.binary(max_size=200))
def test_base64_round_trip(data: bytes) -> None:
    assert decode_challenge(encode_response(data)) == data


# -- redaction ----------------------------------------------------------------

secrets = st.text(min_size=1, max_size=30).filter(lambda s: "\0" not in s and "\x01" not in s)


@given(secrets)
def test_secrets_never_in_repr(tail: str) -> None:
    for secret in ("S3CR3T-" + tail, ("S3CR3T-" + tail).encode()):
        mechs: list[SASLMechanism] = [
            Plain("user", secret),
            Plain("user", "pw", authzid="admin"),
            Login("user", secret),
            CramMD5("user", secret),
            ScramSHA256("user", secret),
            XOAuth2("user", secret),
            OAuthBearer("user", secret),
        ]
        for mech in mechs:
            for text in (repr(mech), str(mech), f"{mech}", f"{mech!r}"):
                assert "<redacted>" in text
                assert "'user'" in text
                assert "S3CR3T" not in text


def test_repr_shape() -> None:
    assert repr(Plain("u", "secret")) == "Plain(username=b'u', password=<redacted>)"
    assert repr(XOAuth2("u", "secret")) == "XOAuth2(username=b'u', token=<redacted>)"


# -- choosing a mechanism -----------------------------------------------------


def test_preference_keeps_aiosmtplib_order() -> None:
    builtin = [name for name in PREFERENCE if name in ("CRAM-MD5", "PLAIN", "LOGIN")]
    assert builtin == ["CRAM-MD5", "PLAIN", "LOGIN"]


def test_choose_mechanism() -> None:
    assert choose_mechanism(["LOGIN", "PLAIN", "CRAM-MD5"]) == "CRAM-MD5"
    assert choose_mechanism(["login", "plain"]) == "PLAIN"
    assert choose_mechanism(["Login"]) == "LOGIN"
    assert choose_mechanism(["GSSAPI", "NTLM"]) is None
    assert choose_mechanism([]) is None
    assert choose_mechanism(iter(["plain", "login"])) == "PLAIN"


def test_choose_mechanism_custom_preference() -> None:
    assert choose_mechanism(["LOGIN", "PLAIN"], preference=["LOGIN", "PLAIN"]) == "LOGIN"
    assert choose_mechanism(["xoauth2", "plain"], preference=("xoauth2",)) == "XOAUTH2"
    assert choose_mechanism(["PLAIN"], preference=()) is None


@given(st.lists(st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "GSSAPI", "NTLM"]), max_size=5))
def test_choose_mechanism_is_first_offered_in_preference(offered: list[str]) -> None:
    chosen = choose_mechanism([name.lower() for name in offered])
    candidates = [name for name in PREFERENCE if name in offered]
    assert chosen == (candidates[0] if candidates else None)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("plain", Plain), ("LOGIN", Login), ("cram-md5", CramMD5), ("Scram-Sha-256", ScramSHA256)],
)
def test_credentials_mechanism(name: str, cls: type[SASLMechanism]) -> None:
    mech = credentials_mechanism(name, "u", "p")
    assert isinstance(mech, cls)
    assert MECHANISMS[cls.name] is cls


def test_credentials_mechanism_unknown() -> None:
    with pytest.raises(LocalProtocolError, match="unknown SASL mechanism 'GSSAPI'"):
        credentials_mechanism("GSSAPI", "u", "p")
    with pytest.raises(LocalProtocolError):
        credentials_mechanism("XOAUTH2", "u", "p")  # a token, not a password


# -- user-defined mechanisms --------------------------------------------------


class Echo(SASLMechanism):
    """A toy two-round mechanism: echoes each challenge reversed, then refuses a third."""

    name = "X-ECHO"

    def __init__(self) -> None:
        self.rounds = 0

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        self.rounds += 1
        if self.rounds > 2:
            raise RemoteProtocolError("X-ECHO: too many challenges")
        return challenge[::-1]


def test_user_mechanism_plugs_in() -> None:
    mech = Echo()
    assert exchange(mech, [b64(b"abc"), b64(b"xy")]) == ["", b64(b"cba"), b64(b"yx")]
    with pytest.raises(RemoteProtocolError, match="too many"):
        mech.respond(b"z")
    mech.check_success()  # the default accepts the 235
    assert choose_mechanism(["x-echo"], preference=[Echo.name]) == "X-ECHO"


def test_base_class_is_abstract() -> None:
    with pytest.raises(TypeError):
        SASLMechanism()  # type: ignore[abstract]

    class Incomplete(SASLMechanism):
        name = "X-INCOMPLETE"

        def initial_response(self) -> bytes | None:
            return b""

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]
