"""The servers the benchmarks send to, on loopback.

* ``sink``: Postfix's smtp-sink, a test server that accepts and drops everything. It
  offers PIPELINING but not CHUNKING, so clients send content with DATA.
* ``postfix``: Postfix's real smtpd, with its own configuration directory under a
  temporary directory, its queue on tmpfs when /dev/shm exists, and every message
  delivered to the ``discard`` transport. It offers PIPELINING and CHUNKING (BDAT), and
  each message passes through cleanup and the queue manager before its final reply,
  as on a real MTA. Starting Postfix's master process needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SINK = "/usr/sbin/smtp-sink"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, what: str) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Sink:
    """smtp-sink on 127.0.0.1:port."""

    name = "sink"

    def __init__(self, port: int) -> None:
        self.port = port
        # -c: count, -m 1024: max concurrent sessions, 1024: backlog
        self.process = subprocess.Popen(
            [SINK, "-c", "-m", "1024", "-u", "nobody", f"127.0.0.1:{port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(port, "smtp-sink")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
smtpd_relay_restrictions = permit_mynetworks, reject
# Every message is accepted, queued, then dropped by the discard transport.
default_transport = discard:benchmark
relay_transport = discard:benchmark
local_transport = discard:benchmark
# Nothing that would slow a fast sender down on purpose or look anything up.
in_flow_delay = 0
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_delay_reject = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_discard_ehlo_keywords =
message_size_limit = 0
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
"""


class PostfixServer:
    """Postfix smtpd on 127.0.0.1:port, discarding every message."""

    name = "postfix"

    def __init__(self, port: int) -> None:
        if not os.path.exists(POSTFIX):
            raise RuntimeError(f"{POSTFIX} not found (Debian package postfix)")
        if os.geteuid() != 0:
            raise RuntimeError("starting a Postfix master process needs root")
        self.port = port
        # The queue lives on tmpfs when it can, so fsync costs what it costs on a
        # server with a battery-backed disk cache rather than a VM's virtual disk.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.base = Path(tempfile.mkdtemp(prefix="smtp-sansio-bench-postfix-", dir=shm))
        self.base.chmod(0o755)  # Postfix's daemons run as the postfix user
        etc, queue, data = self.base / "etc", self.base / "queue", self.base / "data"
        for directory in (etc, queue, data):
            directory.mkdir()
        shutil.chown(data, user="postfix")
        (etc / "main.cf").write_text(MAIN_CF.format(queue=queue, data=data, base=self.base))
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            if line.startswith("smtp      inet"):
                lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
                continue
            match = re.match(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\S+)(\s.*)$", line)
            if match and not line.startswith(("#", " ")):
                line = match.group(1) + "n" + match.group(3)  # no chroot
            lines.append(line)
        (etc / "master.cf").write_text("\n".join(lines) + "\n")
        self.etc = str(etc)
        started = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True, text=True)
        if started.returncode != 0:
            log = self.base / "maillog"
            tail = log.read_text()[-800:] if log.exists() else ""
            shutil.rmtree(self.base, ignore_errors=True)
            raise RuntimeError(f"Postfix did not start: {started.stderr.strip()} {tail}")
        wait_listening(port, "Postfix smtpd")

    def queued(self) -> int:
        """Messages still in the queue (all should have been discarded)."""
        out = subprocess.run(
            ["postqueue", "-c", self.etc, "-j"], capture_output=True, text=True, check=False
        )
        return sum(1 for line in out.stdout.splitlines() if line.strip())

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def start_server(name: str, port: int) -> Sink | PostfixServer:
    if name == "sink":
        return Sink(port)
    if name == "postfix":
        return PostfixServer(port)
    raise ValueError(f"unknown server {name!r}")
