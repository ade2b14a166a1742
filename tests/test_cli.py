"""The smtp-sansio command line against its embedded demo server and loopback aiosmtpd."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest

from .cli import commands, run_cli, run_json, stage_names

AUTH_MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"]


def test_embedded_demo_server_shows_the_whole_conversation_over_starttls() -> None:
    result = run_cli("--to", "you@example.org", "--subject", "demo run")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert re.search(r"^=== Started the embedded SMTP server on 127\.0\.0\.1 port \d+ \(STARTTLS", out, re.M)
    assert commands(out) == [
        commands(out)[0],  # EHLO with this host's name
        "STARTTLS",
        commands(out)[0],
        "MAIL FROM:<smtp-sansio@localhost.localdomain> SIZE=" + commands(out)[3].rsplit("=", 1)[1],
        "RCPT TO:<you@example.org>",
        "DATA",
        commands(out)[6],
        ".",
        "QUIT",
    ]
    assert commands(out)[0].startswith("EHLO ")
    assert re.search(r"^=== TLS: TLSv1\.[23], \S+ \(\d+ bits\)$", out, re.M)
    assert re.search(r"^=== Server certificate: .*CN=demo\.smtp-sansio\.invalid; issuer .*smtp-sansio demo CA.*; expires 20\d\d-", out, re.M)
    # every reply's first line carries the time it took
    assert re.search(r"^S: 220 demo\.smtp-sansio\.invalid .*  \[\+\d+\.\d ms\]$", out, re.M)
    assert re.search(r"^S: 221 Bye  \[\+\d+\.\d ms\]$", out, re.M)
    assert "    | Subject: demo run" in out
    last = out.splitlines()[-1]
    assert re.fullmatch(r"=== OK: message accepted by 127\.0\.0\.1:\d+ for 1 recipient: 2\.0\.0 Message accepted \(\d+\.\d ms\)", last)


def test_embedded_server_with_implicit_tls() -> None:
    result = run_cli("--tls")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(implicit TLS;" in out
    lines = out.splitlines()
    greeting = next(i for i, line in enumerate(lines) if line.startswith("S: 220 "))
    assert lines[greeting + 1].startswith("=== TLS: TLSv1.")
    assert "STARTTLS" not in commands(out)
    assert "    RCPT TO:   <you@example.org>" in out


def test_starttls_and_the_demo_user_out_of_the_box() -> None:
    result = run_cli("--starttls", "--user", "demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    password = re.search(r"password '([^']+)'", out)
    assert password is not None
    sent = commands(out)
    assert sent.index("STARTTLS") < next(i for i, c in enumerate(sent) if c.startswith("AUTH "))
    assert any(c.endswith("<redacted>") for c in sent if c.startswith("AUTH "))
    assert password.group(1) not in "\n".join(sent)
    assert re.search(r"^S: 235 ", out, re.M)


@pytest.mark.parametrize("mechanism", AUTH_MECHANISMS)
def test_auth_forces_each_mechanism(mechanism: str) -> None:
    result = run_cli("--user", "demo", "--auth", mechanism.lower())
    assert result.returncode == 0, result.stderr
    sent = commands(result.stdout)
    assert [c.split()[1] for c in sent if c.startswith("AUTH ")] == [mechanism]
    assert re.search(r"^S: 235 ", result.stdout, re.M)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "XOAUTH2"])
def test_wrong_password_is_an_auth_failure(mechanism: str) -> None:
    result = run_cli("--user", "demo", "--auth", mechanism, env={"SMTP_PASSWORD": "wrong"})
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: auth: ")
    assert len(result.stderr.splitlines()) == 1
    assert "MAIL FROM" not in result.stdout


def test_auth_not_offered_before_tls_is_an_auth_failure() -> None:
    result = run_cli("--no-starttls", "--user", "demo", "--auth", "PLAIN")
    assert result.returncode == 5
    assert result.stderr == "error: auth: the server offers no AUTH (some servers offer it only after STARTTLS), not PLAIN\n"
    assert "STARTTLS" not in commands(result.stdout)


def test_password_from_the_environment(smtpd: Any) -> None:
    server = smtpd(auth={"alice": "hunter2-secret"})
    result = run_cli(
        "--server", f"127.0.0.1:{server.port}", "--from", "a@example.org",
        "--to", "b@example.org", "--to", "c@example.org", "--user", "alice",
        env={"SMTP_PASSWORD": "hunter2-secret"},
    )
    assert result.returncode == 0, result.stderr
    assert "C: AUTH SCRAM-SHA-256 <redacted>" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    [got] = server.messages
    assert got.rcpt_tos == ["b@example.org", "c@example.org"]
    assert got.authenticated_as == b"alice"


def test_headers_attachments_subject_and_body() -> None:
    attachment = Path(__file__).parent / "cli.py"
    result, doc = run_json(
        "--from", "alice@example.org", "--to", "bob@example.org",
        "--subject", "Quarterly report", "--body", "Numbers attached.\n",
        "--header", "X-Campaign: 42", "--header", "Subject: replaced by --header",
        "--attach", str(attachment),
    )
    assert result.returncode == 0, result.stderr
    [received] = doc["received"]
    msg = email.message_from_string(received["content"].replace("\r\n", "\n"), policy=email.policy.default)
    assert msg["X-Campaign"] == "42"
    assert msg.get_all("Subject") == ["replaced by --header"]
    assert msg["From"] == "alice@example.org"
    assert msg["To"] == "bob@example.org"
    assert msg.get_body().get_content() == "Numbers attached.\n"  # type: ignore[union-attr]
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "cli.py"
    assert part.get_payload(decode=True) == attachment.read_bytes()


def test_raw_data_from_a_file_and_from_stdin(smtpd: Any, tmp_path: Path) -> None:
    server = smtpd()
    raw = b"Subject: raw\r\n\r\n.dot line\r\n"
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    base = ("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org", "--quiet")
    from_file = run_cli(*base, "--data", str(path))
    from_stdin = run_cli(*base, "--data", "-", stdin=raw)
    assert (from_file.returncode, from_file.stdout, from_file.stderr) == (0, "", "")
    assert (from_stdin.returncode, from_stdin.stdout, from_stdin.stderr) == (0, "", "")
    assert [m.content for m in server.messages] == [raw, raw]


def test_ehlo_name() -> None:
    result = run_cli("--ehlo", "client.example.net")
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout)[0] == "EHLO client.example.net"
    assert commands(result.stdout)[2] == "EHLO client.example.net"


def test_lmtp_gets_one_reply_per_recipient() -> None:
    result, doc = run_json("--lmtp", "--to", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    lines = [entry["line"] for entry in doc["transcript"] if "line" in entry]
    assert lines[1].startswith("C: LHLO ")
    assert "S: 250 2.0.0 <a@example.org> delivered" in lines
    assert "S: 250 2.0.0 <b@example.org> delivered" in lines
    assert doc["server"]["lmtp"] is True


def test_unix_socket(smtpd: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "smtp.sock")
    server = smtpd(unix_socket=path)
    result = run_cli("--socket", path, "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    assert f"=== Connected to {path} in " in result.stdout
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"]]


def test_dsn_options_reach_the_server() -> None:
    result, doc = run_json(
        "--dsn-notify", "failure,delay", "--dsn-ret", "hdrs", "--dsn-envid", "id 42+x",
        "--to", "a@example.org",
    )
    assert result.returncode == 0, result.stderr
    [received] = doc["received"]
    assert "RET=HDRS" in received["mail_options"]
    assert "ENVID=id+2042+2Bx" in received["mail_options"]
    assert received["rcpt_options"] == [["NOTIFY=FAILURE,DELAY"]]


def test_dsn_without_the_servers_dsn_is_refused(smtpd: Any) -> None:
    server = smtpd()
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--dsn-notify", "NEVER")
    assert result.returncode == 1
    assert result.stderr.startswith("error: smtp: ")
    assert "DSN" in result.stderr
    assert server.messages == []


QUIT_POINTS = {
    # stage: the commands sent (EHLO abbreviated), always ending with QUIT
    "greeting": ["QUIT"],
    "ehlo": ["EHLO", "QUIT"],
    "tls": ["EHLO", "STARTTLS", "EHLO", "QUIT"],
    "auth": ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"],
    "mail": ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "QUIT"],
    "rcpt": ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "QUIT"],
}


@pytest.mark.parametrize("stage", list(QUIT_POINTS))
def test_quit_after(stage: str) -> None:
    result = run_cli("--quit-after", stage, "--user", "demo", "--to", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in commands(result.stdout) if not c.startswith("<")] == QUIT_POINTS[stage]
    assert "=== The embedded server received:" not in result.stdout
    assert re.search(rf"^=== OK: stopped after {stage} as asked, 127\.0\.0\.1:\d+ \(", result.stdout.splitlines()[-1])


def test_quit_after_connect_sends_and_reads_nothing() -> None:
    result, doc = run_json("--quit-after", "connect")
    assert result.returncode == 0, result.stderr
    assert stage_names(doc) == ["connect"]
    assert [entry for entry in doc["transcript"] if "line" in entry] == []
    assert doc["outcome"]["stopped_after"] == "connect"


def test_quit_after_tls_with_implicit_tls_stops_after_the_greeting() -> None:
    result, doc = run_json("--tls", "--quit-after", "tls")
    assert result.returncode == 0, result.stderr
    assert stage_names(doc) == ["connect", "greeting", "quit"]
    assert doc["stages"][1]["tls"]["version"].startswith("TLSv1.")


def test_quit_after_rcpt_reports_refused_recipients() -> None:
    result, doc = run_json("--quit-after", "rcpt", "--to", "a@example.org", "--to", "refuse-me@example.org")
    assert result.returncode == 7
    assert doc["outcome"]["refused"] == {
        "refuse-me@example.org": {"code": 550, "message": "5.1.1 <refuse-me@example.org>: the demo server refuses addresses like this"}
    }
    assert stage_names(doc)[-1] == "quit"


def test_null_sender() -> None:
    result = run_cli("--from", "<>")
    assert result.returncode == 0, result.stderr
    assert "MAIL FROM:<>" in "\n".join(commands(result.stdout))


def test_ipv6_server_address(smtpd: Any) -> None:
    server = smtpd(host="::1")
    result = run_cli("--server", f"[::1]:{server.port}", "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    assert f"=== Connected to [::1]:{server.port} in " in result.stdout
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"]]


def test_without_trustme_the_demo_goes_on_without_tls(tmp_path: Path) -> None:
    # A module that cannot be imported hides the installed trustme.
    (tmp_path / "trustme.py").write_text("raise ImportError('hidden for this test')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    plain = run_cli(env=env)
    assert plain.returncode == 0, plain.stderr
    assert "=== No TLS on the embedded server: the embedded demo server needs trustme (for TLS)" in plain.stdout
    assert "STARTTLS" not in commands(plain.stdout)
    required = run_cli("--starttls", env=env)
    assert required.returncode == 2
    assert required.stderr == "smtp-sansio: error: the embedded demo server needs trustme (for TLS): pip install 'smtp-sansio[demo]' (see --help)\n"


def test_non_ascii_body_is_sent_as_7bit_and_raw_8bit_data_asks_for_8bitmime(tmp_path: Path) -> None:
    composed, doc = run_json("--body", "Grüße\n")
    assert composed.returncode == 0, composed.stderr
    [received] = doc["received"]
    assert received["content"].isascii()
    assert "Content-Transfer-Encoding: quoted-printable" in received["content"]
    assert "BODY=8BITMIME" not in received["mail_options"]
    raw = tmp_path / "8bit.eml"
    raw.write_bytes("Subject: 8-bit\r\n\r\nGrüße\r\n".encode())
    sent, doc = run_json("--data", str(raw))
    assert sent.returncode == 0, sent.stderr
    [received] = doc["received"]
    assert "BODY=8BITMIME" in received["mail_options"]
    assert received["content"] == "Subject: 8-bit\r\n\r\nGrüße\r\n"


def test_international_addresses_use_smtputf8(smtpd: Any) -> None:
    result, doc = run_json("--from", "zoë@example.org", "--to", "jörg@example.org")
    assert result.returncode == 0, result.stderr
    [received] = doc["received"]
    assert "SMTPUTF8" in received["mail_options"]
    assert received["rcpt_tos"] == ["jörg@example.org"]
    assert "\r\nTo: jörg@example.org\r\n" in received["content"]
    stepwise = run_cli("--to", "jörg@example.org", "--quit-after", "rcpt")
    assert stepwise.returncode == 0, stepwise.stderr
    assert "MAIL FROM:<smtp-sansio@localhost.localdomain> SMTPUTF8" in commands(stepwise.stdout)
    server = smtpd()  # no SMTPUTF8
    refused = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "jörg@example.org")
    assert refused.returncode == 1
    assert "SMTPUTF8" in one_line_error(refused.stderr)
    assert server.messages == []


def one_line_error(stderr: str) -> str:
    [line] = stderr.splitlines()
    return line
