"""Write the seed corpus: sessions captured from real servers, and hand-written transcripts.

    python fuzz/capture_corpus.py [aiosmtpd] [postfix] [dovecot] [exim] [written] [headers]

aiosmtpd (SMTP and LMTP) runs in-process; Postfix (``postfix``), Dovecot's LMTP server
(``dovecot-lmtpd``) and Exim (``exim4-daemon-light``; ``EXIM=/path/to/exim4``, and its
``Debian-exim`` user must exist) are the Debian packages, started as root on loopback with
private configurations in a temporary directory; a missing one is skipped, saying so.
Mail is queued or saved in that directory, never delivered anywhere.

Each captured session is played by the same client the ``connection`` harness drives
(``harness.COMMANDS``), against a real server on loopback; the server's bytes are kept
exactly as received. It is written twice: ``corpus/connection/ok-<name>`` (the script
line, then the bytes) and ``corpus/replies/ok-<name>`` (``e`` when the server offered
ENHANCEDSTATUSCODES, then the bytes). Hand-written transcripts (``WRITTEN``: servers not
run here, and malformed replies) are written the same way. ``ok-`` inputs must play
without a protocol error, ``bad-`` ones must end in one (tests/test_fuzz_regressions.py).
``HEADERS`` are the Subjects of the ``headers`` target.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import harness

from smtp_core import NEED_DATA, ClientConnection, ConnectionClosed, Event

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def play(host: str, port: int, script: str) -> bytes:
    """Run ``script`` (harness letters) against a live server; return the server's bytes."""
    conn = ClientConnection(lmtp="L" in script)
    sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout=10)
    received = bytearray()
    closed = False
    try:
        for letter in script:
            if letter == ">":
                while not closed:
                    event = conn.next_event()
                    if event is not NEED_DATA:
                        assert isinstance(event, Event)
                        closed = isinstance(event, ConnectionClosed)
                        break
                    data = sock.recv(65536)
                    received += data
                    conn.receive_data(data)
            elif letter == "T":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname="localhost")
                conn.tls_established()
            else:
                sock.sendall(conn.send(harness.COMMANDS[letter.encode()]))
    finally:
        sock.close()
    return bytes(received)


def write(name: str, script: bytes, transcript: bytes, *, replies_name: str | None = None) -> None:
    """Write both forms; ``replies_name`` when the replies themselves are well formed."""
    enhanced = re.search(rb"^250[ -]ENHANCEDSTATUSCODES", transcript, re.M | re.I)
    for target, first_line, file_name in (
        ("connection", script, name),
        ("replies", b"e" if enhanced else b"", replies_name or name),
    ):
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        (directory / file_name).write_bytes(first_line + b"\n" + transcript)
    print(f"{name}: {len(transcript)} bytes")


# -- aiosmtpd -----------------------------------------------------------------------------


def capture_aiosmtpd() -> None:
    sys.path.insert(0, str(HERE.parent))
    import trustme

    from tests.servers import start_smtpd

    class Certs:
        def __init__(self) -> None:
            self.ca = trustme.CA()
            self.cert = self.ca.issue_cert("localhost", "127.0.0.1")
            self.ca_path = None

        def server_context(self) -> ssl.SSLContext:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.cert.configure_cert(context)
            return context

    certs = Certs()
    sessions = {
        "aiosmtpd-transaction": ({}, ">E>M>R>D>C.>Q>"),  # no PIPELINING
        "aiosmtpd-starttls": ({"tls": "starttls"}, ">E>S>TE>Q>"),
        "aiosmtpd-auth-plain": ({"auth": {"u": "p"}}, ">E>A>Q>"),
        "aiosmtpd-auth-login-refused": ({"auth": {"u": "p"}}, ">E>l>a>a>Q>"),
        "aiosmtpd-helo-vrfy-help": ({}, ">H>V>h>N>r>Q>"),
        "aiosmtpd-refused-recipient": (
            {"refuse_recipients": {"b@example.org": "550 5.1.1 <b@example.org>: User unknown"}},
            ">E>M>R>r>Q>",
        ),
    }
    for name, (options, script) in sessions.items():
        info = start_smtpd(certs=certs, **options)
        try:
            write(f"ok-{name}", script.encode(), play(info.host, info.port, script))
        finally:
            info.stop()
    info = start_smtpd(
        certs=certs, lmtp=True, lmtp_refuse={"c@example.org": "550 5.1.1 c: no such user"}
    )
    try:
        script = ">L>M>R>W>D>C.>>Q>"
        write("ok-aiosmtpd-lmtp", script.encode(), play(info.host, info.port, script))
    finally:
        info.stop()


# -- Postfix ------------------------------------------------------------------------------


@contextmanager
def postfix() -> Iterator[int]:
    """Postfix's smtpd on loopback with a private configuration; mail is held, not sent."""
    import trustme

    base = Path(tempfile.mkdtemp(prefix="corpus-postfix-"))
    base.chmod(0o755)
    etc, queue, data = base / "etc", base / "queue", base / "data"
    for directory in (etc, queue, data):
        directory.mkdir()
    shutil.chown(data, user="postfix")
    ca = trustme.CA()
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(etc / "server.pem")
    )
    port = free_port()
    (etc / "main.cf").write_text(
        f"compatibility_level = 3.6\nqueue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\ninet_interfaces = 127.0.0.1\n"
        "inet_protocols = ipv4\nmyhostname = mta.test\nmydestination =\n"
        "mynetworks = 127.0.0.0/8\nrelayhost =\ndefer_transports = smtp relay\n"
        "smtputf8_enable = yes\nmessage_size_limit = 1000000\n"
        f"smtpd_tls_chain_files = {etc}/server.pem\nsmtpd_tls_security_level = may\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject\n"
        "smtpd_recipient_restrictions = check_recipient_access inline:{ c@example.org=REJECT }\n"
        f"maillog_file = {base}/maillog\nmaillog_file_prefixes = {base}\n"
    )
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        if line.startswith("smtp      inet"):
            line = f"127.0.0.1:{port} inet n - n - - smtpd"
        match = re.match(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\S+)(\s.*)$", line)
        if match and not line.startswith(("#", " ")):
            line = match.group(1) + "n" + match.group(3)  # no chroot
        lines.append(line)
    (etc / "master.cf").write_text("\n".join(lines) + "\n")
    subprocess.run(["postfix", "-c", str(etc), "start"], check=True, capture_output=True)
    try:
        wait_for(port)
        yield port
    finally:
        subprocess.run(["postfix", "-c", str(etc), "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def capture_postfix() -> None:
    if os.geteuid() != 0 or shutil.which("postfix") is None:
        print("Postfix sessions skipped: needs root and the postfix package")
        return
    sessions = {
        "postfix-transaction": ">E>MRD>>>C.>Q>",
        "postfix-starttls": ">E>S>TE>Q>",
        "postfix-smtputf8": ">E>uRD>>>C.>Q>",
        "postfix-8bitmime-dsn-refused": ">E>mnRD>>>>C.>Q>",
        "postfix-bdat": ">E>MRB>>>b>Q>",
        "postfix-helo-vrfy": ">H>V>N>r>Q>",
        "postfix-no-valid-recipients": ">E>MWD>>>r>Q>",
    }
    with postfix() as port:
        for name, script in sessions.items():
            write(f"ok-{name}", script.encode(), play("127.0.0.1", port, script))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# -- Dovecot LMTP -------------------------------------------------------------------------

DOVECOT_CONF = """protocols = lmtp
base_dir = {base}/run
state_dir = {base}/state
mail_location = maildir:{base}/mail/%u
first_valid_uid = 1
log_path = {base}/dovecot.log
hostname = mail.example.org
ssl = no
listen = 127.0.0.1
userdb {{
  driver = passwd-file
  args = {base}/users
}}
passdb {{
  driver = passwd-file
  args = {base}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


def capture_dovecot() -> None:
    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if os.geteuid() != 0 or not Path("/usr/lib/dovecot/lmtp").exists():
        print("Dovecot sessions skipped: needs root and the dovecot-lmtpd package")
        return
    import pwd

    postfix_user = pwd.getpwnam("postfix") if shutil.which("postfix") else pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="corpus-dovecot-"))
    base.chmod(0o755)
    for name in ("run", "state", "mail"):
        (base / name).mkdir()
    shutil.chown(base / "mail", user=postfix_user.pw_uid)
    (base / "users").write_text(
        f"b@example.org:{{PLAIN}}p:{postfix_user.pw_uid}:{postfix_user.pw_gid}::{base}/mail/b\n"
    )
    port = free_port()
    (base / "dovecot.conf").write_text(DOVECOT_CONF.format(base=base, port=port))
    server = subprocess.Popen([dovecot, "-F", "-c", str(base / "dovecot.conf")])
    sessions = {
        "dovecot-lmtp": ">L>MRW>>>D>C.>Q>",
        "dovecot-lmtp-bdat": ">L>MRB>>>b>Q>",
        "dovecot-lmtp-vrfy-noop-rset": ">L>V>N>r>Q>",
    }
    try:
        wait_for(port)
        for name, script in sessions.items():
            write(f"ok-{name}", script.encode(), play("127.0.0.1", port, script))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)


# -- Exim ---------------------------------------------------------------------------------

EXIM_CONF = """local_interfaces = 127.0.0.1
primary_hostname = mx.example.org
domainlist local_domains = example.org
spool_directory = {base}/spool
log_file_path = {base}/%slog
exim_user = root
exim_group = root
never_users =
queue_only = true
keep_environment = LD_LIBRARY_PATH
acl_smtp_rcpt = acl_check_rcpt
message_size_limit = 50M
prdr_enable = true
chunking_advertise_hosts = *
pipelining_connect_advertise_hosts = *
tls_advertise_hosts = *
tls_certificate = {base}/server.pem
tls_privatekey = {base}/server.pem
auth_advertise_hosts = ${{if eq{{$tls_in_cipher}}{{}}{{}}{{*}}}}
begin acl
acl_check_rcpt:
  accept local_parts = b
         domains = +local_domains
  deny   message = relay not permitted
begin routers
begin transports
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_condition = ${{if eq{{$auth2}}{{u}}{{yes}}{{no}}}}
  server_set_id = $auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = no
"""


def capture_exim() -> None:
    exim = os.environ.get("EXIM") or shutil.which("exim4") or shutil.which("exim")
    if os.geteuid() != 0 or exim is None:
        print("Exim sessions skipped: needs root and an exim4 binary (EXIM=/path/to/exim4)")
        return
    import trustme

    base = Path(tempfile.mkdtemp(prefix="corpus-exim-"))
    (base / "spool").mkdir()
    trustme.CA().issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(base / "server.pem")
    )
    (base / "exim.conf").write_text(EXIM_CONF.format(base=base))
    port = free_port()
    server = subprocess.Popen([exim, "-C", str(base / "exim.conf"), "-bdf", "-oX", str(port)])
    sessions = {
        "exim-transaction": ">E>MRD>>>C.>Q>",
        "exim-starttls-auth": ">E>S>TE>A>Q>",
        "exim-starttls-auth-login-refused": ">E>S>TE>l>a>a>Q>",
        "exim-relay-refused": ">E>MWD>>>r>Q>",
        "exim-bdat": ">E>MRB>>>b>Q>",
        "exim-smtputf8": ">E>uRD>>>C.>Q>",
        "exim-helo-vrfy": ">H>V>N>r>Q>",
    }
    try:
        wait_for(port)
        for name, script in sessions.items():
            write(f"ok-{name}", script.encode(), play("127.0.0.1", port, script))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)


# -- written by hand ----------------------------------------------------------------------

WRITTEN: dict[str, tuple[bytes, bytes]] = {
    "ok-greeting-refused-554": (b">Q>", b"554 5.7.1 No SMTP service here\r\n221 2.0.0 Bye\r\n"),
    "ok-idle-421": (
        b">E>N>",
        b"220 mx ESMTP\r\n250 mx\r\n421 4.4.2 mx Error: timeout exceeded\r\n",
    ),
    "ok-auth-loop": (
        b">E>l>a>a>*>Q>",
        b"220 mx ESMTP\r\n250-mx\r\n250 AUTH LOGIN\r\n"
        b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n334 UGFzc3dvcmQ6\r\n"
        b"501 5.7.0 Authentication aborted\r\n221 Bye\r\n",
    ),
    "ok-bare-lf-endings": (
        b">E>MRD>>>C.>Q>",
        b"220 mx ESMTP\n250-mx\n250 PIPELINING\n250 ok\n250 ok\n354 go\n250 queued\n221 bye\n",
    ),
    "ok-8bit-and-nul-text": (
        b">E>N>Q>",
        b"220 mx \xff\xfe ESMTP \xc3\xa9t\xc3\xa9\r\n250-mx\x00\r\n250 HELP\r\n"
        b"250 \x00\x01\x7f ok\r\n221 bye\r\n",
    ),
    "ok-code-only-lines": (b">E>N>Q>", b"220\r\n250-\r\n250\r\n250\r\n221\r\n"),
    "ok-byte-at-a-time": (
        b"{" * 14 + b"E" + b"{" * 22 + b"Q}",
        b"220 mx ESMTP\r\n250-mx\r\n250 SIZE 100\r\n221 bye\r\n",
    ),
    "bad-mixed-codes": (b">E>", b"220 mx ESMTP\r\n250-mx\r\n251-PIPELINING\r\n250 SIZE\r\n"),
    "bad-code-outside-2xx-5xx": (b">E>", b"220 mx ESMTP\r\n199 what\r\n"),
    "bad-code-600": (b">E>", b"220 mx ESMTP\r\n600 what\r\n"),
    "bad-no-code": (b">E>", b"220 mx ESMTP\r\nhello there\r\n"),
    "bad-two-digit-code": (b">E>", b"220 mx ESMTP\r\n25 ok\r\n"),
    "bad-separator": (b">E>", b"220 mx ESMTP\r\n250_ok\r\n"),
    "bad-overlong-line": (b">E>", b"220 mx ESMTP\r\n250 " + b"x" * 1000 + b"\r\n"),
    "bad-overlong-unterminated": (b">E>", b"220 mx ESMTP\r\n250-" + b"y" * 600),
    "bad-too-many-lines": (b">E>", b"220 mx ESMTP\r\n" + b"250-x\r\n" * 40 + b"250 end\r\n"),
    "bad-unsolicited-before-command": (b">}E>", b"220 mx ESMTP\r\n250 early\r\n250 mx\r\n"),
    "bad-starttls-injection": (
        b">E>S>",
        b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n250-injected\r\n250 AUTH PLAIN\r\n",
    ),
    "bad-reply-nobody-asked-for": (b">E>N>>", b"220 mx ESMTP\r\n250 mx\r\n250 ok\r\n250 extra\r\n"),
    "bad-nul-in-code": (b">E>", b"220 mx ESMTP\r\n2\x000 ok\r\n"),
    "bad-8bit-code": (b">E>", b"220 mx ESMTP\r\n\xb2\xb5\xb0 ok\r\n"),
    "bad-enhanced-mixed": (
        b">E>",
        b"220 mx ESMTP\r\n250-mx\r\n250-ENHANCEDSTATUSCODES\r\n550 5.1.1 mixed\r\n",
    ),
}


# Well-formed replies that the connection must refuse: they come at the wrong time.
WRONG_TIME = {
    "bad-unsolicited-before-command",
    "bad-starttls-injection",
    "bad-reply-nobody-asked-for",
}


def write_written() -> None:
    for name, (script, transcript) in WRITTEN.items():
        replies_name = name.replace("bad-", "ok-", 1) if name in WRONG_TIME else None
        write(name, script, transcript, replies_name=replies_name)


# Subjects for the headers target: options line, then the value. ok- ones are sent,
# bad- ones refused (tests/test_fuzz_regressions.py).
HEADERS: dict[str, bytes] = {
    "ok-compat32-plain": b"\nhello world",
    "ok-compat32-folded-space": b"\nhi\r\n folded",
    "ok-mimetext-folded-tab": b"m\nhi\r\n\tfolded",
    "ok-compat32-long": b"\n" + b"word " * 60,
    "ok-header-encoded-long": b"h\n" + "caf\u00e9 ".encode() * 40,
    "ok-email-long-utf8": b"eu\n" + "caf\u00e9 ".encode() * 40,
    "ok-email-raw-folded": b"r\nhi\r\n folded",
    "ok-email-7bit": b"e7\ncaf\xc3\xa9",
    "ok-compat32-8bit-undecodable": b"\n\xff\xfe raw bytes",
    "ok-compat32-nul-and-controls": b"\nhi\x00\x01\x7f",
    "ok-compat32-encoded-crlf": b"\n=?utf-8?q?hi=0D=0A=0D=0AInjected?=",
    "bad-compat32-crlf-crlf-body": b"\nhi\r\n\r\nInjected body",
    "bad-compat32-crlf-header": b"\nhi\r\nBcc: evil@example.org",
    "bad-compat32-bare-lf": b"\nhi\nInjected line",
    "bad-compat32-bare-cr": b"\nhi\rInjected line",
    "bad-compat32-whitespace-line": b"\nhi\r\n \r\nInjected body",
    "bad-compat32-vt": b"\nhi\x0bInjected line",
    "bad-compat32-ff-ff": b"\nhi\x0c\x0cInjected body",
    "bad-compat32-trailing-crlf": b"\nhi\r\n",
    "bad-mimetext-crlf-crlf-body": b"m\nhi\r\n\r\nInjected body",
    "bad-header-object-crlf-crlf": b"h\nhi\r\n\r\nInjected body",
    "bad-email-trailing-crlf": b"e\nhi\r\n",
    "bad-email-trailing-cr": b"eu\nhi\r",
    "bad-email-crlf-refused-when-set": b"e\nhi\r\nX: 1",
    "bad-email-raw-crlf-crlf-body": b"r\nhi\r\n\r\nInjected body",
}


def write_headers() -> None:
    directory = CORPUS / "headers"
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in HEADERS.items():
        (directory / name).write_bytes(data)
    print(f"headers: {len(HEADERS)} inputs")


CAPTURES: dict[str, Callable[[], None]] = {
    "aiosmtpd": capture_aiosmtpd,
    "postfix": capture_postfix,
    "dovecot": capture_dovecot,
    "exim": capture_exim,
    "written": write_written,
    "headers": write_headers,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CAPTURES):
        CAPTURES[name]()
