"""The public surface: aiosmtplib's names, submodules and exception structure, in both adapters."""

from __future__ import annotations

import importlib

import pytest

import smtp_anyio
import smtp_asyncio
import smtp_core

EXCEPTIONS = [
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupported",
    "SMTPRecipientRefused",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "SMTPConnectTimeoutError",
    "SMTPReadTimeoutError",
    "SMTPConnectResponseError",
]


@pytest.mark.parametrize("module", [smtp_asyncio, smtp_anyio])
def test_names_and_submodules(module: object) -> None:
    name = module.__name__  # type: ignore[attr-defined]
    for attr in ["SMTP", "send", "SMTPResponse", "SMTPStatus", "SMTPTokenGenerator", *EXCEPTIONS]:
        assert hasattr(module, attr), attr
        assert attr in module.__all__  # type: ignore[attr-defined]
    errors = importlib.import_module(f"{name}.errors")
    for attr in EXCEPTIONS:
        # The same classes in every adapter, so except clauses work across them.
        assert getattr(errors, attr) is getattr(smtp_core, attr)
    assert importlib.import_module(f"{name}.response").SMTPResponse is smtp_core.SMTPResponse
    assert importlib.import_module(f"{name}.status").SMTPStatus is smtp_core.SMTPStatus
    typing_module = importlib.import_module(f"{name}.typing")
    assert typing_module.SMTPStatus.completed == 250


def test_exception_structure() -> None:
    assert issubclass(smtp_core.SMTPServerDisconnected, ConnectionError)
    assert issubclass(smtp_core.SMTPTimeoutError, TimeoutError)
    assert issubclass(smtp_core.SMTPConnectTimeoutError, smtp_core.SMTPConnectError)
    assert issubclass(smtp_core.SMTPConnectResponseError, smtp_core.SMTPConnectError)
    exc = smtp_core.SMTPSenderRefused(550, "no", "a@b.org")
    assert (exc.code, exc.message, exc.sender, exc.args) == (550, "no", "a@b.org", (550, "no", "a@b.org"))
    refused = smtp_core.SMTPRecipientsRefused([smtp_core.SMTPRecipientRefused(550, "no", "x@y.org")])
    assert refused.recipients[0].recipient == "x@y.org"
    response = smtp_core.SMTPResponse(250, "OK")
    assert str(response) == "250 OK" and response.code == 250 and response[1] == "OK"


def test_matches_aiosmtplib_when_installed() -> None:
    aiosmtplib = pytest.importorskip("aiosmtplib")
    for attr in EXCEPTIONS:
        ours, theirs = getattr(smtp_core, attr), getattr(aiosmtplib, attr)
        assert [c.__name__ for c in ours.__mro__] == [c.__name__ for c in theirs.__mro__]
    assert {m.name: m.value for m in smtp_core.SMTPStatus} == {m.name: m.value for m in aiosmtplib.SMTPStatus}
    assert set(aiosmtplib.__all__) <= set(smtp_asyncio.__all__)


@pytest.mark.parametrize("module", [smtp_asyncio, smtp_anyio])
def test_default_ports(module: object) -> None:
    SMTP = module.SMTP  # type: ignore[attr-defined]
    assert SMTP()._get_default_port() == 25
    assert SMTP(use_tls=True)._get_default_port() == 465
    assert SMTP(start_tls=True)._get_default_port() == 587
