"""The embedded demo server's throwaway certificate: trusted for its own run only."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from smtp_asyncio import SMTP, SMTPConnectError
from smtp_asyncio._cli._demo import start_demo_server


def test_each_run_trusts_exactly_its_own_ca() -> None:
    first = start_demo_server(implicit_tls=True, lmtp=False)
    second = start_demo_server(implicit_tls=True, lmtp=False)
    try:
        assert first.client_context is not None and second.client_context is not None
        context = first.client_context
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert context.cert_store_stats()["x509_ca"] == 1  # no system store
        [ca] = context.get_ca_certs()
        assert ("organizationName", "smtp-sansio demo CA (this run only)") in [rdn[0] for rdn in ca["subject"]]

        async def greet(port: int) -> int:
            async with SMTP(hostname="127.0.0.1", port=port, use_tls=True, tls_context=context, timeout=5) as smtp:
                return (await smtp.noop()).code

        assert asyncio.run(greet(first.port)) == 250
        with pytest.raises(SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(greet(second.port))  # another run's certificate
    finally:
        first.stop()
        second.stop()
