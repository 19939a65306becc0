"""Sending: email over SMTP (smtplib) and SMS through a study's webhook (httpx).

A channel raises :class:`SendError` on failure; ``permanent`` errors (a 5xx SMTP reply, a 4xx
from the SMS provider) are not retried. Error texts pass through :func:`scrub` before they are
stored, because servers like to quote the recipient's address.

Examples
--------
>>> scrub("550 5.1.1 <ana@example.org>: Recipient address rejected", "ana@example.org")
'550 5.1.1 <[redacted]>: Recipient address rejected'
>>> scrub("bad number +44 7700 900123")
'bad number [number]'
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import httpx

from api.netguard import blocked

log = logging.getLogger("peerlens.reminders")

_EMAIL_RE = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_NUMBER_RE = re.compile(r"\+?\d[\d ()-]{5,}\d")


def scrub(text: str, *identifiers: str | None) -> str:
    """Remove identifiers (given ones, then anything shaped like an address or phone number)."""
    for ident in identifiers:
        if ident:
            text = text.replace(ident, "[redacted]")
    text = _EMAIL_RE.sub("[email]", text)
    text = _NUMBER_RE.sub("[number]", text)
    return text[:500]


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Outgoing:
    """One message ready to go; ``to`` is an address or phone number (never logged).

    ``reminder_id`` is the outbox row's id: a reminder's, or a staff notification's when ``staff``
    (staff messages carry no unsubscribe link: safety messages cannot be switched off by mail).
    """

    reminder_id: int
    message_id: str
    channel: str
    to: str
    subject: str
    body: str
    unsubscribe_url: str | None
    webhook_url: str | None = None
    staff: bool = False


class EmailChannel:
    """SMTP sender keeping one connection open across messages (reconnects when dropped).

    Parameters
    ----------
    host, port : str, int
    starttls : bool
        Upgrade the connection with STARTTLS before authenticating.
    username, password : str, optional
        SMTP AUTH credentials.
    sender : str
        ``From`` header and envelope sender.
    ca_file : str, optional
        CA bundle for a private mail relay's certificate.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        sender: str,
        timeout: float = 30.0,
        ca_file: str | None = None,
    ):
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password, self.sender, self.timeout = username, password, sender, timeout
        self.ca_file = ca_file
        self._smtp: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, settings) -> EmailChannel:
        pw = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=pw,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout,
            ca_file=settings.smtp_ca_file,
        )

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            smtp.starttls(context=ctx)
        if self.username:
            smtp.ehlo_or_helo_if_needed()
            if "plain" in smtp.esmtp_features.get("auth", "").lower().split():
                # One mechanism, one answer: a refusal is a clear 535 rather than a walk through
                # every mechanism the relay offers.
                smtp.user, smtp.password = self.username, self.password or ""
                smtp.auth("PLAIN", smtp.auth_plain)
            else:
                smtp.login(self.username, self.password or "")
        return smtp

    def build(self, out: Outgoing, domain_date: float | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = out.to
        msg["Subject"] = out.subject
        msg["Message-ID"] = out.message_id
        msg["Date"] = formatdate(domain_date, usegmt=True)
        if out.unsubscribe_url:
            msg["List-Unsubscribe"] = f"<{out.unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(out.body)
        return msg

    def send(self, out: Outgoing) -> str | None:
        msg = self.build(out)
        for attempt in (1, 2):
            try:
                if self._smtp is None:
                    self._smtp = self._connect()
                self._smtp.send_message(msg, from_addr=self.sender, to_addrs=[out.to])
                return None
            except smtplib.SMTPServerDisconnected:
                self._smtp = None
                if attempt == 2:
                    raise SendError("SMTP server disconnected") from None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [c for c, _ in exc.recipients.values()]
                self.reset()
                raise SendError(
                    scrub(f"recipient refused ({', '.join(map(str, codes))})", out.to),
                    permanent=all(c >= 500 for c in codes),
                ) from None
            except smtplib.SMTPResponseException as exc:
                text = (
                    exc.smtp_error.decode(errors="replace")
                    if isinstance(exc.smtp_error, bytes)
                    else str(exc.smtp_error)
                )
                self.reset()
                raise SendError(
                    scrub(f"SMTP {exc.smtp_code}: {text}", out.to), permanent=exc.smtp_code >= 500
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                self.reset()
                raise SendError(scrub(f"{type(exc).__name__}: {exc}", out.to)) from None
        return None

    def reset(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:  # noqa: BLE001 - the connection is being dropped anyway
                try:
                    smtp.close()
                except Exception:  # noqa: BLE001
                    pass

    close = reset


class SmsWebhookChannel:
    """SMS through the study's provider: ``POST`` JSON ``{to, body, message_id}`` to its URL.

    A 2xx answer is a send; the provider's ``id`` (or ``sid``) from a JSON answer is kept as
    ``provider_ref``.
    """

    def __init__(self, timeout: float = 15.0, allowed_networks: str = ""):
        # Redirects are not followed: a public URL must not bounce the request inward.
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self.allowed_networks = allowed_networks

    def send(self, out: Outgoing) -> str | None:
        if not out.webhook_url:
            raise SendError("no SMS webhook configured for the study", permanent=True)
        reason = blocked(out.webhook_url, self.allowed_networks)
        if reason:
            # Checked again at every send: a name may resolve elsewhere than when it was configured.
            raise SendError(f"SMS webhook refused: {reason}", permanent="does not resolve" not in reason)
        try:
            r = self._client.post(out.webhook_url, json={"to": out.to, "body": out.body, "message_id": out.message_id})
        except httpx.HTTPError as exc:
            raise SendError(scrub(f"SMS webhook unreachable: {type(exc).__name__}", out.to)) from None
        if r.status_code >= 300:
            raise SendError(
                f"SMS webhook answered {r.status_code}",
                permanent=400 <= r.status_code < 500 and r.status_code not in (408, 429),
            )
        try:
            data = r.json()
        except ValueError:
            return None
        ref = data.get("id") or data.get("sid") if isinstance(data, dict) else None
        return str(ref)[:200] if ref is not None else None

    def close(self) -> None:
        self._client.close()
