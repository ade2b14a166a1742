"""Fixtures: trustme certificates, aiosmtpd servers, scripted servers, and the adapters."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
import trio
import trustme
from hypothesis import settings

import smtp_anyio
import smtp_asyncio

from . import sync_facade
from .servers import ScriptedServer, ServerInfo, Step, start_smtpd

# Property tests check behaviour, not speed: on a shared machine a slow example is no
# failure (Hypothesis's per-example deadline would make them fail under load).
settings.register_profile("smtp-sansio", deadline=None)
settings.load_profile("smtp-sansio")

uvloop: Any
try:
    import uvloop
except ImportError:  # not built for this platform
    uvloop = None


@dataclass
class Certs:
    ca: trustme.CA
    ca_path: str
    server_cert: trustme.LeafCert
    client_cert_path: str
    client_key_path: str
    other_ca_path: str
    wrong_host_cert: trustme.LeafCert
    expired_cert: trustme.LeafCert
    untrusted_cert: trustme.LeafCert

    def server_context(self, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (cert or self.server_cert).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory: Path = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("client@smtp-sansio.test")
    client_cert_path = directory / "client.pem"
    client_key_path = directory / "client.key"
    client.cert_chain_pems[0].write_to_path(str(client_cert_path))
    client.private_key_pem.write_to_path(str(client_key_path))
    other = trustme.CA()
    other_ca_path = directory / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_ca_path))
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    return Certs(
        ca=ca,
        ca_path=str(ca_path),
        server_cert=server_cert,
        client_cert_path=str(client_cert_path),
        client_key_path=str(client_key_path),
        other_ca_path=str(other_ca_path),
        wrong_host_cert=ca.issue_cert("wrong.example"),
        expired_cert=ca.issue_cert("localhost", "127.0.0.1", not_after=past),
        untrusted_cert=other.issue_cert("localhost", "127.0.0.1"),
    )


@pytest.fixture
def smtpd(certs: Certs) -> Iterator[Callable[..., ServerInfo]]:
    """Start aiosmtpd servers on loopback: ``smtpd(tls="starttls", auth={...})``."""
    started: list[ServerInfo] = []

    def start(**options: Any) -> ServerInfo:
        info = start_smtpd(certs=certs, **options)
        started.append(info)
        return info

    yield start
    for info in started:
        info.stop()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted misbehaving servers: ``scripted([Send(...), Expect(...), ...])``."""
    started: list[ScriptedServer] = []

    def start(script: list[Step], **kwargs: Any) -> ScriptedServer:
        server = ScriptedServer(script, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class Adapter:
    """One way to run the client: a module with aiosmtplib's API and an event loop.

    ``sync`` is smtp_sync, each call made in a worker thread behind
    :mod:`tests.sync_facade` (aiosmtplib's names and results, smtp_sync's behaviour
    and exceptions), on asyncio.
    """

    name: str
    module: ModuleType
    backend: str

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        if self.backend == "uvloop":
            return uvloop.run(fn())  # type: ignore[arg-type]
        if self.name == "asyncio":
            return asyncio.run(fn())  # type: ignore[arg-type]
        return anyio.run(fn, backend=self.backend)

    @property
    def cancelled(self) -> type[BaseException]:
        return trio.Cancelled if self.backend == "trio" else asyncio.CancelledError

    async def sleep(self, seconds: float) -> None:
        if self.module is smtp_asyncio:
            await asyncio.sleep(seconds)
        else:
            await anyio.sleep(seconds)


ADAPTERS = [
    Adapter("asyncio", smtp_asyncio, "asyncio"),
    Adapter("anyio-asyncio", smtp_anyio, "asyncio"),
    Adapter("anyio-trio", smtp_anyio, "trio"),
]
if uvloop is not None:  # another event loop: its transports are not asyncio's classes
    ADAPTERS.append(Adapter("asyncio-uvloop", smtp_asyncio, "uvloop"))
ADAPTERS.append(Adapter("sync", sync_facade, "asyncio"))


#: The behavioural modules that also run on the ``sync`` entry (in the others its runs
#: are deselected: their subject is aiosmtplib's API itself, or typed extensions and
#: mechanisms that smtplib's API has no place for).
SYNC_MODULES = frozenset(
    {
        "test_aiosmtplib_behaviour",
        "test_client",
        "test_deadlines",
        "test_header_injection",
        "test_hostile",
        "test_lmtp_and_results",
        "test_pipeline_outcomes",
        "test_pool",
        "test_postfix",
        "test_throughput_behaviour",
        "test_timeouts",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def on_sync(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("adapter") if callspec is not None else None
        return isinstance(chosen, Adapter) and chosen.name == "sync"

    deselected = [
        item
        for item in items
        if on_sync(item) and item.module.__name__.rpartition(".")[2] not in SYNC_MODULES  # type: ignore[attr-defined]
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "not_on_sync(reason): the test is about aiosmtplib API that smtp_sync does not have "
        "(skipped for the sync adapter, with the reason)",
    )


@pytest.fixture(params=ADAPTERS, ids=[a.name for a in ADAPTERS])
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Each behavioural test runs once per adapter and backend."""
    chosen: Adapter = request.param
    if chosen.name == "sync":
        marker = request.node.get_closest_marker("not_on_sync")
        if marker is not None:
            pytest.skip(f"not on smtp_sync: {marker.args[0]}")
    return chosen
