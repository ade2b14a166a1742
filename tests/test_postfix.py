"""Interoperability with a real MTA: Postfix's smtpd on loopback, with its own configuration.

Each test checks what Postfix queued (``postqueue -j``, ``postcat``). Mail for remote
domains is held in the queue (``defer_transports``), so nothing leaves the machine.
The module skips, saying why, only when Postfix is missing or cannot be started here
(it needs root to run its master process); `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from .conftest import Adapter
from .sync_facade import refusals

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


@dataclass
class Postfix:
    etc: str
    port: int
    tls_port: int
    ca_path: str
    plain_port: int  # no CHUNKING offered: DATA

    def queue(self) -> dict[str, dict[str, Any]]:
        out = subprocess.run(["postqueue", "-c", self.etc, "-j"], capture_output=True, text=True, check=True)
        entries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        return {entry["queue_id"]: entry for entry in entries}

    def postcat(self, queue_id: str) -> str:
        out = subprocess.run(["postcat", "-c", self.etc, "-q", queue_id], capture_output=True, check=True)
        return out.stdout.decode("utf-8", "replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    if not os.path.exists(POSTFIX):
        pytest.skip("Postfix is not installed (Debian package postfix)")
    if os.geteuid() != 0:
        pytest.skip("starting a Postfix master process needs root")
    # Postfix's daemons run as the postfix user: the directories must be reachable by it
    # (pytest's own temporary root is private to root).
    base = Path(tempfile.mkdtemp(prefix="smtp-sansio-postfix-"))
    base.chmod(0o755)
    etc, queue, data = base / "etc", base / "queue", base / "data"
    for directory in (etc, queue, data):
        directory.mkdir()
    shutil.chown(data, user="postfix")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(etc / "server.pem"))
    ca.cert_pem.write_to_path(str(etc / "ca.pem"))
    port, tls_port, plain_port = _free_port(), _free_port(), _free_port()
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
defer_transports = smtp relay
smtputf8_enable = yes
message_size_limit = 1000000
smtpd_tls_chain_files = {etc}/server.pem
smtpd_tls_security_level = may
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access inline:{{refused@example.net=REJECT}}
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
"""
    )
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        if line.startswith("smtp      inet"):
            lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
            lines.append(f"127.0.0.1:{tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes")
            lines.append(f"127.0.0.1:{plain_port} inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=chunking")
            continue
        match = re.match(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\S+)(\s.*)$", line)
        if match and not line.startswith(("#", " ")):
            line = match.group(1) + "n" + match.group(3)  # no chroot
        lines.append(line)
    (etc / "master.cf").write_text("\n".join(lines) + "\n")
    started = subprocess.run([POSTFIX, "-c", str(etc), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        log = (base / "maillog").read_text() if (base / "maillog").exists() else ""
        pytest.fail(f"Postfix did not start: {started.stderr.strip()} {log[-800:]}")
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            import time

            time.sleep(0.05)
    yield Postfix(str(etc), port, tls_port, str(etc / "ca.pem"), plain_port)
    subprocess.run([POSTFIX, "-c", str(etc), "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def queue_id(reply_text: str) -> str:
    match = re.search(r"queued as (\w+)", reply_text)
    assert match, reply_text
    return match.group(1)


@pytest.mark.not_on_sync(
    "DSN objects (dsn=) are aiosmtplib's; smtplib's API has mail_options/rcpt_options strings, the same for every recipient"
)
def test_starttls_pipelining_bdat_smtputf8_dsn(adapter: Adapter, postfix: Postfix) -> None:
    mod = adapter.module
    msg = EmailMessage()
    msg["From"] = "José <josé@example.org>"
    msg["To"] = "用户@例子.广告, plain@example.net"
    msg["Subject"] = "héllo"
    msg.set_content("8-bit body: naïve café\n.a line with a leading dot\n")

    async def main() -> tuple[str, str, list[str]]:
        async with mod.SMTP(
            hostname="localhost", port=postfix.port, start_tls=True, cert_bundle=postfix.ca_path, timeout=20
        ) as smtp:
            assert smtp.get_transport_info("sslcontext") is not None
            await smtp.ehlo()  # capabilities are learnt again over TLS
            assert smtp.supports_extension("chunking") and smtp.supports_extension("pipelining")
            _, first = await smtp.send_message(msg)
            _, second = await smtp.sendmail(
                "bounces@example.org",
                ["dsn@example.net"],
                b"Subject: dsn\r\n\r\nhello\r\n",
                dsn=mod.DSN(ret="HDRS", envid="envelope-42", notify=("FAILURE", "DELAY"), orcpt=True),
            )
            refused = []
            with pytest.raises(mod.SMTPSenderRefused) as info:  # over SIZE: refused before content
                await smtp.sendmail("a@example.org", ["b@example.net"], b"x" * 2_000_000)
            refused.append(str(info.value.code))
            return first, second, refused

    first, second, refused = adapter.run(main)
    queue = postfix.queue()
    entry = queue[queue_id(first)]
    assert entry["sender"] == "josé@example.org"
    assert {r["address"] for r in entry["recipients"]} == {"用户@例子.广告", "plain@example.net"}
    content = postfix.postcat(queue_id(first))
    assert "with UTF8SMTPS" in content or "with ESMTPS" in content  # received over TLS
    assert "naïve café" in content and "\n.a line with a leading dot" in content
    dsn = postfix.postcat(queue_id(second))
    assert "envelope_id=envelope-42" in dsn
    assert "dsn_orig_rcpt=rfc822;dsn@example.net" in dsn
    assert "ret_flags=2" in dsn
    assert refused == ["552"]


def test_implicit_tls(adapter: Adapter, postfix: Postfix) -> None:
    mod = adapter.module

    async def main() -> str:
        async with mod.SMTP(
            hostname="localhost", port=postfix.tls_port, use_tls=True, cert_bundle=postfix.ca_path, timeout=20
        ) as smtp:
            _, text = await smtp.sendmail("a@example.org", ["tls@example.net"], b"Subject: tls\r\n\r\nhi\r\n")
            return text

    text = adapter.run(main)
    content = postfix.postcat(queue_id(text))
    assert "with ESMTPS" in content
    assert postfix.queue()[queue_id(text)]["recipients"][0]["address"] == "tls@example.net"


def test_batch_pipelined_into_postfix(adapter: Adapter, postfix: Postfix) -> None:
    mod = adapter.module

    async def main() -> list[Any]:
        async with mod.SMTP(hostname="127.0.0.1", port=postfix.port, start_tls=False, timeout=20) as smtp:
            return await smtp.send_messages(
                [("a@example.org", [f"batch{i}@example.net"], b"Subject: b\r\n\r\nhi\r\n") for i in range(20)]
            )

    results = adapter.run(main)
    ids = [queue_id(text) for _, text in results]
    queue = postfix.queue()
    assert len(set(ids)) == 20
    assert sorted(queue[i]["recipients"][0]["address"] for i in ids) == sorted(f"batch{i}@example.net" for i in range(20))


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
@pytest.mark.not_on_sync(
    "DSN objects (dsn=) are aiosmtplib's; smtplib's API has mail_options/rcpt_options strings, the same for every recipient"
)
def test_dsn_for_each_recipient(adapter: Adapter, postfix: Postfix, chunking: bool) -> None:
    mod = adapter.module
    recipients = ["dsn-a@example.net", "dsn-b@example.net", "dsn-c@example.net"]
    dsn = mod.DSN(
        envid="three-recipients",
        notify={"dsn-a@example.net": ("NEVER",), "dsn-b@example.net": ("SUCCESS",), "dsn-c@example.net": ("FAILURE", "DELAY")},
        orcpt={r: f"orig-{r}" for r in recipients},
    )

    async def main() -> str:
        port = postfix.port if chunking else postfix.plain_port
        async with mod.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20) as smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("chunking") is chunking
            _, text = await smtp.sendmail("bounces@example.org", recipients, b"Subject: dsn\r\n\r\nhi\r\n", dsn=dsn)
            return text

    text = adapter.run(main)
    queued = postfix.postcat(queue_id(text))
    # Each recipient record carries its own notify flags and original recipient.
    records = re.findall(r"notify_flags=(\d+)\s+named_attribute: dsn_orig_rcpt=rfc822;orig-(\S+)", queued)
    # Postfix's flags: NEVER=1, SUCCESS=2, FAILURE=4, DELAY=8.
    assert {rcpt: int(flags) for flags, rcpt in records} == {
        "dsn-a@example.net": 1, "dsn-b@example.net": 2, "dsn-c@example.net": 12
    }, queued


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_refused_message_in_a_pipeline_fails_alone(adapter: Adapter, postfix: Postfix, chunking: bool) -> None:
    mod = adapter.module

    async def main() -> list[Any]:
        port = postfix.port if chunking else postfix.plain_port
        async with mod.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20) as smtp:
            return await smtp.send_messages(
                [
                    ("a@example.org", ["first@example.net"], b"Subject: 1\r\n\r\nhi\r\n"),
                    ("a@example.org", ["refused@example.net"], b"Subject: 2\r\n\r\nhi\r\n"),
                    ("a@example.org", ["third@example.net"], b"Subject: 3\r\n\r\nhi\r\n"),
                ]
            )

    first, second, third = adapter.run(main)
    assert isinstance(second, mod.SMTPRecipientsRefused)
    assert [code for code, _ in refusals(second)] == [554]
    queue = postfix.queue()
    assert queue[queue_id(first[1])]["recipients"][0]["address"] == "first@example.net"
    assert queue[queue_id(third[1])]["recipients"][0]["address"] == "third@example.net"
