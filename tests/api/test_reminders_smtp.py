"""The email channel against a real aiosmtpd server on loopback requiring STARTTLS and AUTH."""

from __future__ import annotations

import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from api.reminders.channels import EmailChannel, Outgoing, SendError
from tests.api.reminders_support import Collector, free_port


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"relay", b"s3cret")
        return AuthResult(success=ok, handled=False)

    handler = Collector()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    yield port, str(cert), handler
    controller.stop()


def outgoing(n=1):
    return Outgoing(
        reminder_id=n,
        message_id=f"<reminder.{n}.t@testserver>",
        channel="email",
        to="ana@example.org",
        subject="Your questionnaire",
        body="Hello, https://x/f/1",
        unsubscribe_url="http://testserver/u/abc",
    )


def test_starttls_and_login_then_send(tls_server):
    port, cert, handler = tls_server
    ch = EmailChannel(
        host="127.0.0.1",
        port=port,
        starttls=True,
        username="relay",
        password="s3cret",
        sender="Study team <team@example.org>",
        ca_file=cert,
    )
    try:
        ch.send(outgoing(1))
        ch.send(outgoing(2))  # same connection
    finally:
        ch.close()
    assert [m["Message-ID"] for m in handler.messages] == ["<reminder.1.t@testserver>", "<reminder.2.t@testserver>"]
    assert handler.messages[0]["List-Unsubscribe"] == "<http://testserver/u/abc>"


def test_wrong_password_is_a_permanent_failure_without_the_address(tls_server):
    port, cert, _ = tls_server
    ch = EmailChannel(
        host="127.0.0.1",
        port=port,
        starttls=True,
        username="relay",
        password="wrong",
        sender="team@example.org",
        ca_file=cert,
    )
    with pytest.raises(SendError) as exc:
        ch.send(outgoing())
    assert exc.value.permanent and "535" in str(exc.value) and "ana@" not in str(exc.value)


def test_plain_connection_is_refused_by_a_starttls_server(tls_server):
    port, _, _ = tls_server
    ch = EmailChannel(host="127.0.0.1", port=port, sender="team@example.org")
    with pytest.raises(SendError) as exc:
        ch.send(outgoing())
    assert "ana@example.org" not in str(exc.value)


def test_unreachable_server_is_a_temporary_failure():
    ch = EmailChannel(host="127.0.0.1", port=free_port(), sender="team@example.org", timeout=2)
    with pytest.raises(SendError) as exc:
        ch.send(outgoing())
    assert not exc.value.permanent
