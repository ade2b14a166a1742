"""Building the client's ``ssl.SSLContext`` from aiosmtplib's TLS options (shared by adapters)."""

from __future__ import annotations

import ssl

__all__ = ["build_tls_context"]


def build_tls_context(
    *,
    tls_context: ssl.SSLContext | None,
    validate_certs: bool,
    cert_bundle: str | None,
    client_cert: str | None,
    client_key: str | None,
) -> ssl.SSLContext:
    """Return ``tls_context`` if given, else a new client context.

    Certificates and host names are verified unless ``validate_certs`` is False;
    ``cert_bundle`` adds trusted CAs; ``client_cert``/``client_key`` present a client
    certificate.
    """
    if tls_context is not None:
        return tls_context
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = bool(validate_certs)
    context.verify_mode = ssl.CERT_REQUIRED if validate_certs else ssl.CERT_NONE
    if cert_bundle is not None:
        context.load_verify_locations(cafile=cert_bundle)
    if client_cert is not None:
        context.load_cert_chain(client_cert, keyfile=client_key)
    return context
