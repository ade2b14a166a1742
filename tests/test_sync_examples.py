"""smtplib's documented examples, run unchanged but for the import.

The programs come from the Python documentation: the smtplib "SMTP Example", the
``sendmail`` example, and the email package's examples that send with smtplib. Each
runs in a fresh interpreter with ``import smtplib`` replaced by
``import smtp_sync as smtplib``, against an aiosmtpd server on the port the examples
use (25 on localhost); names the examples take as given (``me``, ``you``,
``textfile``...) are defined before them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SMTP_EXAMPLE = """
import smtplib

def prompt(prompt):
    return input(prompt).strip()

fromaddr = prompt("From: ")
toaddrs  = prompt("To: ").split()
print("Enter message, end with ^D (Unix) or ^Z (Windows):")

# Add the From: and To: headers at the start!
msg = ("From: %s\\r\\nTo: %s\\r\\n\\r\\n"
       % (fromaddr, ", ".join(toaddrs)))
while True:
    try:
        line = input()
    except EOFError:
        break
    if not line:
        break
    msg = msg + line

print("Message length is", len(msg))

server = smtplib.SMTP('localhost')
server.set_debuglevel(1)
server.sendmail(fromaddr, toaddrs, msg)
server.quit()
"""

SENDMAIL_EXAMPLE = """
import smtplib
s=smtplib.SMTP("localhost")
tolist=["one@one.org","two@two.org","three@three.org","four@four.org"]
msg = '''\\
From: Me@my.org
Subject: testin'...

This is a test '''
print(s.sendmail("me@my.org",tolist,msg))
s.quit()
"""

TEXT_FILE_EXAMPLE = """
# Import smtplib for the actual sending function
import smtplib

# Import the email modules we'll need
from email.message import EmailMessage

# Open the plain text file whose name is in textfile for reading.
with open(textfile) as fp:
    # Create a text/plain message
    msg = EmailMessage()
    msg.set_content(fp.read())

# me == the sender's email address
# you == the recipient's email address
msg['Subject'] = f'The contents of {textfile}'
msg['From'] = me
msg['To'] = you

# Send the message via our own SMTP server.
s = smtplib.SMTP('localhost')
s.send_message(msg)
s.quit()
"""

FAMILY_REUNION_EXAMPLE = """
# Import smtplib for the actual sending function.
import smtplib

# Here are the email package modules we'll need.
from email.message import EmailMessage

# Create the container email message.
msg = EmailMessage()
msg['Subject'] = 'Our family reunion'
# me == the sender's email address
# family = the list of all recipients' email addresses
msg['From'] = me
msg['To'] = ', '.join(family)
msg.preamble = 'You will not see this in a MIME-aware mail reader.\\n'

# Open the files in binary mode.  You can also omit the subtype
# if you want MIMEImage to guess it.
for file in pngfiles:
    with open(file, 'rb') as fp:
        img_data = fp.read()
    msg.add_attachment(img_data, maintype='image',
                                 subtype='png')

# Send the email via our own SMTP server.
with smtplib.SMTP('localhost') as s:
    s.send_message(msg)
"""

ASPARAGUS_EXAMPLE = """
import smtplib

from email.message import EmailMessage
from email.headerregistry import Address
from email.utils import make_msgid

# Create the base text message.
msg = EmailMessage()
msg['Subject'] = "Ayons asperges pour le déjeuner"
msg['From'] = Address("Pepé Le Pew", "pepe", "example.com")
msg['To'] = (Address("Penelope Pussycat", "penelope", "example.com"),
             Address("Fabrette Pussycat", "fabrette", "example.com"))
msg.set_content(\"\"\"\\
Salut!

Cela ressemble à un excellent recipie[1] déjeuner.

[1] http://www.yummly.com/recipe/Roasted-Asparagus-Epicurious-203718

--Pepé
\"\"\")

# Add the html version.  This converts the message into a multipart/alternative
# container, with the original text message as the first part and the new html
# message as the second part.
asparagus_cid = make_msgid()
msg.add_alternative(\"\"\"\\
<html>
  <head></head>
  <body>
    <p>Salut!</p>
    <p>Cela ressemble à un excellent
        <a href="http://www.yummly.com/recipe/Roasted-Asparagus-Epicurious-203718">
            recipie
        </a> déjeuner.
    </p>
    <img src="cid:{asparagus_cid}" />
  </body>
</html>
\"\"\".format(asparagus_cid=asparagus_cid[1:-1]), subtype='html')

# Send the message via local SMTP server.
with smtplib.SMTP('localhost') as s:
    s.send_message(msg)
"""


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def port_25(tmp_path: Path) -> Any:
    if not _port_free(25):
        pytest.skip("port 25, which the examples use, is busy (or needs privileges) here")
    from aiosmtpd.controller import Controller

    from .servers import Handler, ServerInfo

    handler = Handler(refuse_recipients={"three@three.org": "550 User unknown"})
    controller = Controller(handler, hostname="127.0.0.1", port=25)
    controller.start()
    yield ServerInfo("127.0.0.1", 25, handler, controller)
    controller.stop()


def _run(source: str, prelude: str = "", stdin: str = "") -> subprocess.CompletedProcess[str]:
    source = textwrap.dedent(source).replace("import smtplib", "import smtp_sync as smtplib", 1)
    assert "import smtp_sync as smtplib" in source
    result = subprocess.run(
        [sys.executable, "-c", prelude + source],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return result


def test_smtp_example(port_25: Any) -> None:
    result = _run(SMTP_EXAMPLE, stdin="me@example.org\nyou@example.org them@example.org\nHello there.\n")
    [got] = port_25.messages
    assert got.mail_from == "me@example.org"
    assert got.rcpt_tos == ["you@example.org", "them@example.org"]
    assert got.content.endswith(b"Hello there.\r\n")
    assert "C: MAIL FROM:<me@example.org>" in result.stderr  # set_debuglevel(1): the trace


def test_sendmail_example(port_25: Any) -> None:
    result = _run(SENDMAIL_EXAMPLE)
    assert result.stdout.strip() == "{'three@three.org': (550, b'User unknown')}"
    [got] = port_25.messages
    assert got.rcpt_tos == ["one@one.org", "two@two.org", "four@four.org"]


def test_email_text_file_example(port_25: Any, tmp_path: Path) -> None:
    textfile = tmp_path / "note.txt"
    textfile.write_text("Remember the milk.\n")
    _run(TEXT_FILE_EXAMPLE, f"textfile = {str(textfile)!r}\nme = 'me@example.org'\nyou = 'you@example.org'\n")
    [got] = port_25.messages
    assert got.rcpt_tos == ["you@example.org"] and b"Remember the milk." in got.content


def test_email_family_reunion_example(port_25: Any, tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    prelude = f"me = 'me@example.org'\nfamily = ['a@example.org', 'b@example.org']\npngfiles = [{str(png)!r}]\n"
    _run(FAMILY_REUNION_EXAMPLE, prelude)
    [got] = port_25.messages
    assert got.rcpt_tos == ["a@example.org", "b@example.org"]
    assert b"Content-Type: image/png" in got.content


def test_email_asparagus_example(port_25: Any) -> None:
    _run(ASPARAGUS_EXAMPLE)
    [got] = port_25.messages
    assert got.mail_from == "pepe@example.com"
    assert got.rcpt_tos == ["penelope@example.com", "fabrette@example.com"]
