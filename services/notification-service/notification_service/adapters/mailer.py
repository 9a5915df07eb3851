"""Sending email through an SMTP relay with aiosmtplib (host, port, STARTTLS or implicit TLS, credentials), on
connections kept open between messages.

Why kept connections: a connection per message (connect, EHLO, STARTTLS and AUTH when set, then QUIT) was half of
what sending cost this service's CPU, and relays expect busy clients to reuse connections. A connection is retired
when the relay closed it, after `idle_timeout_s` without use (relays drop idle clients), after
`messages_per_connection` messages (relays cap it) and after any error.

Retrying within one send: only a kept connection found dead at the first command (MAIL FROM not accepted: nothing
of the message left) is replaced and the message sent on a fresh one. A failure once the envelope was accepted is
never retried here: it is a TransientDeliveryError and the delivery worker's retry applies (the relay may have
taken the message; the retry carries the same Message-ID).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr

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


@dataclass(frozen=True)
class RenderedMessage:
    """A message as it goes on the wire: the envelope's addresses and the content (CRLF line endings)."""

    sender: str
    recipient: str
    content: bytes
    # An address is not ASCII: the relay must take SMTPUTF8, and headers are UTF-8 as they are (RFC 6532).
    smtputf8: bool


# ---------------------------------------------------------------------------------------------- building a message
# Written directly rather than through email.message.EmailMessage: its header registry parses every header
# (addresses, Message-ID, Date, each part's Content-Type) and the generator folds them again, 11 % of this service's
# CPU at 15 leads/s for a message whose shape never changes. What it guaranteed is kept: a line break in a header is
# refused, non-ASCII text in headers is RFC 2047 encoded (names and subjects), long headers are folded, bodies are
# 7bit or quoted-printable, and the relay receives multipart/alternative text then HTML.

_MAX_LINE = 78  # RFC 5322's recommended limit, where headers are folded
_WRITTEN_HEADERS = frozenset({"from", "to", "subject", "message-id", "date", "mime-version", "content-type",
                              "content-transfer-encoding"})
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII but the colon (RFC 5322 ftext)
# base64 of 39 bytes is 52 characters: `=?utf-8?b?…?=` is 64, within RFC 2047's 75 and on one line after "Subject: "
_ENCODED_WORD_BYTES = 39


def render_message(email: OutgoingEmail) -> RenderedMessage:
    """Raise ValueError for what cannot be sent (a line break in a header, a header named like one written here,
    no address)."""
    sender_header, sender_address = _sender(email.sender)
    to_header, to_address = _address_header(email.to)
    smtputf8 = not (sender_address.isascii() and to_address.isascii())
    header_lines = [_header("From", sender_header, smtputf8), _header("To", to_header, smtputf8),
                    _header("Subject", email.subject, smtputf8),
                    _header("Message-ID", email.message_id, smtputf8),
                    _header("Date", format_datetime(email.date), smtputf8)]
    for name, value in email.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _WRITTEN_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        header_lines.append(_header(name, value, smtputf8))
    text, html = _body(email.text), _body(email.html)
    boundary = f"=_{secrets.token_hex(12)}"  # '=' never occurs unescaped in quoted-printable; 7bit bodies checked
    while boundary.encode() in text[1] or boundary.encode() in html[1]:
        boundary = f"=_{secrets.token_hex(12)}"
    head = "\r\n".join([*header_lines, "MIME-Version: 1.0",
                        f'Content-Type: multipart/alternative; boundary="{boundary}"'])
    # Each body ends with its line break, then the CRLF that belongs to the next boundary line (RFC 2046).
    parts = b"".join(
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode() + content + b"\r\n"
        for subtype, (encoding, content) in (("plain", text), ("html", html)))
    content = head.encode("utf-8" if smtputf8 else "ascii") + b"\r\n\r\n" + parts + f"--{boundary}--\r\n".encode()
    return RenderedMessage(sender=sender_address, recipient=to_address, content=content, smtputf8=smtputf8)


_SENDERS: dict[str, tuple[str, str]] = {}


def _sender(sender: str) -> tuple[str, str]:
    """The From header's value and the envelope sender, found once per sender."""
    found = _SENDERS.get(sender)
    if found is None:
        found = _address_header(sender)
        if len(_SENDERS) < 100:  # a handful of senders (the settings' and the templates'): no unbounded growth
            _SENDERS[sender] = found
    return found


def _address_header(value: str) -> tuple[str, str]:
    """(the header's value, its address): an ASCII value is written as given (composing it with `formataddr` quoted
    and encoded the name already); a name in other characters is RFC 2047 encoded."""
    _refuse_line_breaks(value)
    name, address = parseaddr(value)
    if not address or "@" not in address:
        raise ValueError(f"no address in {value!r}")
    if value.isascii() or not address.isascii():  # (a non-ASCII address: SMTPUTF8, headers written as they are)
        return value, address
    return f"{_encoded_words(name)} <{address}>", address


def _header(name: str, value: str, smtputf8: bool) -> str:
    _refuse_line_breaks(value)
    if value.isascii() or smtputf8:
        return _folded(name, value)
    return _folded(name, _encoded_words(value))


def _refuse_line_breaks(value: str) -> None:
    if "\r" in value or "\n" in value:  # a header smuggled in (header injection)
        raise ValueError("header values may not contain line breaks")


def _encoded_words(text: str) -> str:
    """`=?utf-8?b?…?=` words of at most 75 characters, a character never split between two (RFC 2047)."""
    words, chunk = [], b""
    for character in text:
        encoded = character.encode()
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(word).decode()}?=" for word in words)


def _folded(name: str, value: str) -> str:
    """`name: value` on lines of at most 78 characters where the value has spaces to break at (RFC 5322 folding: a
    line break before a space, removed by the reader); never between the name and the value's first word."""
    line = f"{name}: {value}"
    if len(line) <= _MAX_LINE:
        return line
    first, *words = value.split(" ")
    lines, current = [], f"{name}: {first}"
    for word in words:
        if len(current) + 1 + len(word) > _MAX_LINE:
            lines.append(current)
            current = f" {word}"
        else:
            current = f"{current} {word}"
    lines.append(current)
    return "\r\n".join(lines)


def _body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, the part's body with CRLF line endings, ending with one): 7bit when ASCII with
    lines the relay takes (998), else quoted-printable."""
    data = text.encode()
    lines = data.splitlines()  # (\n, \r\n and \r, as the email package splits a text part)
    if data.isascii() and all(len(line) <= 998 for line in lines):
        return "7bit", b"\r\n".join(lines) + b"\r\n"
    return "quoted-printable", binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True)


# ---------------------------------------------------------------------------------------------- sending
@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    messages: int = 0
    idle_since: float = 0.0  # time.monotonic() when last put back

    def close(self) -> None:
        self.client.close()


class SmtpMailer:
    def __init__(self, *, host: str, port: int, username: str = "", password: str = "", starttls: bool = False,
                 tls: bool = False, timeout_s: float = 30.0, validate_certs: bool = True,
                 ca_bundle: str = "", max_connections: int = 10, idle_timeout_s: float = 30.0,
                 messages_per_connection: int = 100) -> None:
        self.host, self.port = host, port
        self.username, self.password = username or None, password or None
        self.starttls, self.tls = starttls, tls
        self.timeout_s = timeout_s
        self.validate_certs = validate_certs
        self.ca_bundle = ca_bundle or None
        self.idle_timeout_s = idle_timeout_s
        self.messages_per_connection = max(1, messages_per_connection)
        # Sends run concurrently (the delivery worker's attempts), each on a connection of its own: at most this
        # many open at once.
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle: list[_Connection] = []  # the most recently used last: taken first, the others may expire
        self.connections_opened = 0
        # The name this host gives in EHLO: found once (aiosmtplib looks it up again for every connection).
        self._local_hostname: str | None = None

    async def send(self, email: OutgoingEmail) -> None:
        """Return once the relay accepted the message; raise Transient/PermanentDeliveryError otherwise."""
        try:
            message = render_message(email)
        except (ValueError, TypeError, AttributeError) as exc:  # e.g. a line break smuggled into a header
            raise PermanentDeliveryError(f"the message cannot be built: {exc}") from exc
        try:
            async with self._slots:
                await self._deliver(message)
        except aiosmtplib.SMTPRecipientRefused as exc:
            error = f"recipient refused: {exc.code} {exc.message}"
            if exc.code >= 500:
                raise PermanentDeliveryError(error) from exc
            raise TransientDeliveryError(error) from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.code} {exc.message}"
            if exc.code >= 500 and exc.code not in (530, 535):  # bad address/content; auth errors are config
                raise PermanentDeliveryError(error) from exc
            raise TransientDeliveryError(error) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _deliver(self, message: RenderedMessage) -> None:
        connection = self._kept_connection()
        try:
            if connection is not None and not await self._envelope_started(connection, message):
                connection = None  # found dead before anything was sent: once more on a fresh connection
            if connection is None:
                connection = await self._connect()
                await self._mail_from(connection.client, message)
            # From here the message may reach the relay: whatever fails is not retried in this call.
            await connection.client.rcpt(message.recipient, encoding=_encoding(message))
            await connection.client.data(message.content)
        except BaseException:  # an error or a cancellation leaves the connection in an unknown state
            if connection is not None:
                connection.close()
            raise
        connection.messages += 1
        if connection.messages >= self.messages_per_connection:
            await _quit(connection)
        else:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)

    def _kept_connection(self) -> _Connection | None:
        """The most recently used open connection, retiring those the relay closed or that idled too long."""
        expired_before = time.monotonic() - self.idle_timeout_s
        while self._idle:
            connection = self._idle.pop()
            if connection.client.is_connected and connection.idle_since > expired_before:
                return connection
            connection.close()
        return None

    async def _envelope_started(self, connection: _Connection, message: RenderedMessage) -> bool:
        """MAIL FROM on a kept connection; False (the connection closed) when it turns out dead: the relay closed it
        meanwhile, or says so (421) to the first command."""
        try:
            await self._mail_from(connection.client, message)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            connection.close()
            return False
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code != 421:
                raise
            connection.close()
            return False
        return True

    async def _connect(self) -> _Connection:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, local_hostname=self._local_hostname,
                                 username=self.username, password=self.password, use_tls=self.tls,
                                 start_tls=self.starttls, timeout=self.timeout_s,
                                 validate_certs=self.validate_certs, cert_bundle=self.ca_bundle)
        try:
            await client.connect()  # (greeting; EHLO, STARTTLS and AUTH when set)
            if client.is_ehlo_or_helo_needed:  # the extensions MAIL FROM's options depend on (as aiosmtplib would)
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return _Connection(client)

    @staticmethod
    async def _mail_from(client: aiosmtplib.SMTP, message: RenderedMessage) -> None:
        options = [f"SIZE={len(message.content)}"] if client.supports_extension("size") else []
        if message.smtputf8:
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("an address is not ASCII and the relay does not take SMTPUTF8")
            options.append("SMTPUTF8")
            if client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        await client.mail(message.sender, options=options, encoding=_encoding(message))

    async def aclose(self) -> None:
        """Say goodbye on the connections kept (at shutdown, once no send is running)."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(connection) for connection in idle))


def _encoding(message: RenderedMessage) -> str:
    return "utf-8" if message.smtputf8 else "ascii"


async def _quit(connection: _Connection) -> None:
    try:
        await connection.client.quit(timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass  # going anyway
    finally:
        connection.close()
