"""Helpers of the reminder tests: a loopback SMTP server (aiosmtpd) and a loopback SMS webhook."""

from __future__ import annotations

import email
import json
import socket
import threading
from datetime import UTC
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """aiosmtpd handler keeping every message; ``refuse[address] = "451 …"`` rejects a recipient."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        with self.lock:
            self.messages.append(msg)
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m["Message-ID"] for m in self.messages]

    def clear(self):
        with self.lock:
            self.messages.clear()


class SmtpServer:
    def __init__(self):
        self.handler = Collector()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class SmsHook:
    """A loopback HTTP server standing in for an SMS provider's webhook."""

    def __init__(self, status: int = 200):
        self.received: list[dict] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                payload = json.dumps({"id": f"sms-{len(hook.received)}"}).encode()
                self.send_response(hook.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def bulk_participants(engine, study_id: int, site_id: int, n: int, enrolled_on, *, prefix: str = "B") -> None:
    """Insert ``n`` active participants with an email contact directly (no API, no audit)."""
    from datetime import datetime

    from sqlalchemy import insert, select

    from api.participants.models import Participant, ParticipantContact

    now = datetime.now(UTC)
    rows = [
        {
            "study_id": study_id,
            "site_id": site_id,
            "arm_id": None,
            "study_code": f"{prefix}{i:06d}",
            "enrolled_on": enrolled_on,
            "consent_date": enrolled_on,
            "consent_version": "v1",
            "randomised": False,
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Participant.__table__), rows)
        ids = conn.execute(
            select(Participant.__table__.c.id, Participant.__table__.c.study_code).where(
                Participant.__table__.c.study_id == study_id, Participant.__table__.c.study_code.like(f"{prefix}%")
            )
        ).all()
        conn.execute(
            insert(ParticipantContact.__table__),
            [
                {
                    "participant_id": pid,
                    "email": f"{code.lower()}.{study_id}@example.org",
                    "preferred_channel": "email",
                    "opt_out": False,
                    "updated_at": now,
                }
                for pid, code in ids
            ],
        )
