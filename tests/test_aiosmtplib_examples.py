"""aiosmtplib's documented examples, run unchanged but for the import.

The programs come from aiosmtplib's documentation (5.x README and usage guide) and
from its 1.0 PyPI page; each runs in a fresh interpreter with ``import aiosmtplib``
replaced by ``import smtp_asyncio as aiosmtplib`` (and ``from aiosmtplib`` likewise),
against an aiosmtpd server on the port the example uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

EXAMPLES: dict[str, tuple[int, str]] = {
    "5x-quickstart-send": (
        25,
        """
        import asyncio
        from email.message import EmailMessage

        import aiosmtplib

        message = EmailMessage()
        message["From"] = "root@localhost"
        message["To"] = "somebody@example.com"
        message["Subject"] = "Hello World!"
        message.set_content("Sent via aiosmtplib")

        asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=25))
        """,
    ),
    "5x-send-raw-string": (
        1025,
        """
        import asyncio

        import aiosmtplib

        async def send_raw():
            sender = "root@localhost"
            recipients = ["somebody@example.com"]
            message = \"\"\"To: somebody@example.com
        From: root@localhost
        Subject: Hello World!

        Sent via aiosmtplib
        \"\"\"
            await aiosmtplib.send(
                message, sender=sender, recipients=recipients, hostname="127.0.0.1", port=1025
            )

        asyncio.run(send_raw())
        """,
    ),
    "5x-smtp-class": (
        1025,
        """
        import asyncio
        from email.message import EmailMessage

        from aiosmtplib import SMTP

        async def say_hello():
            message = EmailMessage()
            message["From"] = "root@localhost"
            message["To"] = "somebody@example.com"
            message["Subject"] = "Hello World!"
            message.set_content("Sent via aiosmtplib")

            smtp_client = SMTP(hostname="127.0.0.1", port=1025)
            await smtp_client.connect()
            await smtp_client.send_message(message)
            await smtp_client.quit()

        asyncio.run(say_hello())
        """,
    ),
    "5x-context-manager-sendmail": (
        1025,
        """
        import asyncio

        from aiosmtplib import SMTP

        async def say_hello():
            async with SMTP(hostname="127.0.0.1", port=1025) as smtp_client:
                await smtp_client.sendmail(
                    "root@localhost", ["somebody@example.com"], "Subject: hi\\n\\nHello"
                )

        asyncio.run(say_hello())
        """,
    ),
    "5x-multipart": (
        1025,
        """
        import asyncio
        from email.mime.multipart import MIMEMultipart
        from email.mime.text import MIMEText

        import aiosmtplib

        message = MIMEMultipart("alternative")
        message["From"] = "root@localhost"
        message["To"] = "somebody@example.com"
        message["Subject"] = "Hello World!"

        message.attach(MIMEText("hello", "plain", "utf-8"))
        message.attach(MIMEText("<html><body><h1>Hello</h1></body></html>", "html", "utf-8"))

        asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=1025))
        """,
    ),
    "5x-gather-parallel": (
        1025,
        """
        import asyncio
        from email.message import EmailMessage

        import aiosmtplib

        async def send_many():
            messages = []
            for index in range(3):
                message = EmailMessage()
                message["From"] = "root@localhost"
                message["To"] = "somebody@example.com"
                message["Subject"] = f"Hello {index}"
                message.set_content("Sent via aiosmtplib")
                messages.append(message)
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=1025) as client:
                await asyncio.gather(*[client.send_message(m) for m in messages])

        asyncio.run(send_many())
        """,
    ),
    "5x-timeouts": (
        1025,
        """
        import asyncio

        import aiosmtplib

        async def main():
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=1025, timeout=10)
            await client.connect(timeout=5)
            await client.ehlo(timeout=5)
            await client.mail("root@localhost", timeout=5)
            await client.rcpt("somebody@example.com", timeout=5)
            await client.data("Subject: timeouts\\n\\nHello", timeout=5)
            await client.quit()

        asyncio.run(main())
        """,
    ),
    "1.0-pypi-basic-usage": (
        1025,
        """
        import asyncio
        import aiosmtplib

        loop = asyncio.get_event_loop()
        smtp = aiosmtplib.SMTP(hostname='localhost', port=1025, loop=loop)

        async def send_a_message():
            sender = 'root@localhost'
            recipient = 'somebody@localhost'
            message = "Hello World"
            await smtp.sendmail(sender, [recipient], message)

        loop.run_until_complete(send_a_message())
        """,
    ),
    "1.0.x-quickstart-mimetext": (
        1025,
        """
        import asyncio
        from email.mime.text import MIMEText

        import aiosmtplib

        loop = asyncio.get_event_loop()
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=1025, loop=loop)
        loop.run_until_complete(smtp.connect())

        message = MIMEText("Sent via aiosmtplib")
        message["From"] = "root@localhost"
        message["To"] = "somebody@example.com"
        message["Subject"] = "Hello World!"

        loop.run_until_complete(smtp.send_message(message))
        """,
    ),
    "1.0.x-connect-method": (
        1025,
        """
        import asyncio
        from aiosmtplib import SMTP

        client = SMTP()
        loop = asyncio.get_event_loop()
        loop.run_until_complete(client.connect(hostname="localhost", port=1025))
        """,
    ),
}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_aiosmtplib_example_runs(name: str) -> None:
    port, source = EXAMPLES[name]
    if not _port_free(port):
        pytest.skip(f"port {port} used by the example is busy on this machine")
    source = textwrap.dedent(source)
    source = source.replace("import aiosmtplib", "import smtp_asyncio as aiosmtplib")
    source = source.replace("from aiosmtplib import", "from smtp_asyncio import")
    server: Any = None
    try:
        server = _server_on(port)
        env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
        result = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 0, result.stderr
        if "connect-method" not in name:
            assert server.messages, "the example sent no message"
            assert all(m.rcpt_tos for m in server.messages)
    finally:
        if server is not None:
            server.stop()


def _server_on(port: int) -> Any:
    from aiosmtpd.controller import Controller

    from .servers import Handler, ServerInfo

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return ServerInfo("127.0.0.1", port, handler, controller)
