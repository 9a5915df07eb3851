"""Sending email through an SMTP relay with aiosmtplib (host, port, STARTTLS or implicit TLS, credentials)."""
from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime

import aiosmtplib

from .errors import PermanentDeliveryError, TransientDeliveryError


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str
    to: str
    subject: str
    html: str
    text: str
    message_id: str
    date: datetime
    headers: dict[str, str]


def build_message(email: OutgoingEmail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = _parsed_sender(email.sender)
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.date)
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


_SENDERS: dict[str, BaseHeader] = {}


def _parsed_sender(sender: str) -> BaseHeader:
    """The From header, parsed once per sender (parsing an address header is most of building a message; the
    message stores a parsed header as it is)."""
    header = _SENDERS.get(sender)
    if header is None:
        _, header = default_policy.header_store_parse("From", sender)  # (what the message would do: checks too)
        if len(_SENDERS) < 100:  # a handful of senders (the settings' and the templates'): no unbounded growth
            _SENDERS[sender] = header
    return header


class SmtpMailer:
    def __init__(self, *, host: str, port: int, username: str = "", password: str = "", starttls: bool = False,
                 tls: bool = False, timeout_s: float = 30.0, validate_certs: bool = True,
                 ca_bundle: str = "") -> None:
        self.host, self.port = host, port
        self.username, self.password = username or None, password or None
        self.starttls, self.tls = starttls, tls
        self.timeout_s = timeout_s
        self.validate_certs = validate_certs
        self.ca_bundle = ca_bundle or None
        # The name this host gives in EHLO: found once (aiosmtplib looks it up again for every connection).
        self._local_hostname: str | None = None

    async def send(self, email: OutgoingEmail) -> None:
        """Return once the relay accepted the message; raise Transient/PermanentDeliveryError otherwise."""
        try:
            message = build_message(email)
        except (ValueError, TypeError) as exc:  # e.g. a line break smuggled into a header
            raise PermanentDeliveryError(f"the message cannot be built: {exc}") from exc
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        try:
            errors, _reply = await aiosmtplib.send(
                message, hostname=self.host, port=self.port, local_hostname=self._local_hostname,
                username=self.username,
                password=self.password, use_tls=self.tls, start_tls=self.starttls, timeout=self.timeout_s,
                validate_certs=self.validate_certs, cert_bundle=self.ca_bundle)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            error = f"recipient refused: {'; '.join(f'{r.code} {r.message}' for r in exc.recipients)}"
            if codes and all(code >= 500 for code in codes):
                raise PermanentDeliveryError(error) from exc
            raise TransientDeliveryError(error) from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.code} {exc.message}"
            if exc.code >= 500 and exc.code not in (530, 535):  # bad address/content; auth errors are config
                raise PermanentDeliveryError(error) from exc
            raise TransientDeliveryError(error) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if errors:  # some recipients refused (we only ever send to one)
            raise PermanentDeliveryError(f"recipient refused: {errors}")
