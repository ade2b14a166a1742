"""SCRAM-SHA-256 (RFC 7677) and OAUTHBEARER (RFC 7628) on every adapter."""

from __future__ import annotations

from typing import Any

import pytest

from smtp_core import RemoteProtocolError, ScramSHA256

from .conftest import Adapter

MESSAGE = b"Subject: auth\r\n\r\nhi\r\n"


def test_scram_rfc7677_vector() -> None:
    mech = ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert mech.initial_response() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    assert mech.respond(server_first) == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    with pytest.raises(RemoteProtocolError):
        mech.check_success()  # no proof from the server yet
    assert mech.respond(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") == b""
    mech.check_success()


@pytest.mark.parametrize(
    "server_first,fragment",
    [
        (b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (b"r=abcXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999", "iteration"),
        (b"r=abcXYZ,s=!!,i=4096", "salt"),
        (b"r=abcXYZ,i=4096", "lacks"),
    ],
)
def test_scram_refuses_hostile_server_first(server_first: bytes, fragment: str) -> None:
    mech = ScramSHA256("user", "pencil", nonce="abc")
    with pytest.raises(RemoteProtocolError, match=fragment):
        mech.respond(server_first)


def test_scram_against_server(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(auth={"alice": "s3cret"}, auth_required=True)
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            assert smtp.supported_auth_methods[0] == "scram-sha-256"
            response = await smtp.login("alice", "s3cret")  # SCRAM is preferred
            assert response.code == 235
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPAuthenticationError):
                await smtp.auth_scram_sha256("alice", "wrong")

    adapter.run(main)
    assert server.messages[0].authenticated_as == b"alice"


@pytest.mark.parametrize("mode", ["wrong-signature", "no-proof"])
def test_scram_server_must_prove_itself(adapter: Adapter, smtpd: Any, mode: str) -> None:
    server = smtpd(auth={"alice": "s3cret"})
    server.handler.scram_mode = mode
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname=server.host, port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPResponseException) as info:
            await smtp.auth_scram_sha256("alice", "s3cret")
        assert info.value.code == -1
        assert not smtp.is_connected

    adapter.run(main)


def test_oauthbearer_preferred_with_token_generator(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(auth={"alice": "pw"}, xoauth2_tokens={"alice": "tok"})
    mod = adapter.module

    async def token() -> str:
        return "tok"

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port, username="alice", oauth_token_generator=token) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPAuthenticationError):
                await smtp.auth_oauthbearer("alice", "bad")
            assert smtp.is_connected

    adapter.run(main)
    assert server.messages[0].authenticated_as == b"alice"
