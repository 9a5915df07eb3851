"""The SMTP adapter against real aiosmtpd servers: STARTTLS and implicit TLS with credentials, certificate
checks, how refusals are classified (transient vs permanent), connections kept between messages (and what is
retried when one breaks), and the message as the relay receives it."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import ipaddress
import ssl
from email.utils import formataddr
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notification_service.adapters.errors import PermanentDeliveryError, TransientDeliveryError
from notification_service.adapters.mailer import OutgoingEmail, SmtpMailer
from salesflow_shared.testing import free_port


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Recorder:
    def __init__(self) -> None:
        self.sessions: list[tuple[bool, bytes | None, str]] = []
        self.peers: list[tuple[str, int]] = []  # the connection each message came on
        self.refuse: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login if session.auth_data else None
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append((encrypted, login, envelope.content.decode()))
        self.peers.append(session.peer)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"mailer" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, auth_data=auth_data if ok else None)


def message() -> OutgoingEmail:
    return OutgoingEmail(sender="Salesflow <no-reply@example.com>", to="Ada <ada@example.com>", subject="Hi",
                         html="<p>Hi</p>", text="Hi", message_id="<d-1@salesflow.test>",
                         date=dt.datetime.now(dt.UTC), headers={"List-Unsubscribe": "<https://x/u>"})


@pytest.fixture
def tls_files(tmp_path):
    return self_signed(tmp_path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "implicit_tls"])
async def test_tls_with_credentials(tls_files, mode):
    cert, key = tls_files
    recorder, port = Recorder(), free_port()
    options = ({"tls_context": server_context(cert, key), "require_starttls": True} if mode == "starttls"
               # aiosmtpd does not count implicit TLS as TLS for AUTH; the socket is encrypted all the same
               else {"ssl_context": server_context(cert, key), "auth_require_tls": False})
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, server_hostname="127.0.0.1", **options)
    controller.start()
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=port, username="mailer", password="s3cret",
                            starttls=mode == "starttls", tls=mode == "implicit_tls", ca_bundle=str(cert))
        await mailer.send(message())
        await mailer.send(message())  # on the same connection, encrypted and logged in once
        [(encrypted, login, content), again] = recorder.sessions
        assert encrypted and login == b"mailer" and again[:2] == (True, b"mailer")
        assert "Message-ID: <d-1@salesflow.test>" in content and "List-Unsubscribe: <https://x/u>" in content
        assert recorder.peers[0] == recorder.peers[1]
        await mailer.aclose()

        with pytest.raises(TransientDeliveryError):  # an untrusted certificate is refused
            await SmtpMailer(host="127.0.0.1", port=port, username="mailer", password="s3cret",
                             starttls=mode == "starttls", tls=mode == "implicit_tls", timeout_s=5).send(message())
        assert len(recorder.sessions) == 2
    finally:
        controller.stop()


async def test_refusals_are_classified():
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=port)
        recorder.refuse = "550 5.1.1 no such user"
        with pytest.raises(PermanentDeliveryError, match="550"):
            await mailer.send(message())
        recorder.refuse = "452 4.2.2 mailbox full"
        with pytest.raises(TransientDeliveryError, match="452"):
            await mailer.send(message())
        recorder.refuse = None
        await mailer.send(message())  # each refusal closed its connection: this message went on a third
        assert len(recorder.sessions) == 1 and mailer.connections_opened == 3
        await mailer.aclose()
    finally:
        controller.stop()
    with pytest.raises(TransientDeliveryError):  # nobody listening
        await SmtpMailer(host="127.0.0.1", port=port, timeout_s=2).send(message())


# ---------------------------------------------------------------------------------------------- kept connections
class Relay:
    """Keeps each message with the connection it came on (the client's address and port) and can misbehave the
    way relays do: close a connection at MAIL FROM (saying 421 first, or not), or take a message and close the
    connection before answering (the sender cannot know it was taken)."""

    def __init__(self) -> None:
        self.messages: list[tuple[tuple[str, int], bytes]] = []
        self.mail_commands: list[tuple[str, int]] = []
        self.quits = 0
        self.close_at_next_mail: str | None = None  # "421" or "silently"
        self.close_after_next_data = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_commands.append(session.peer)
        if self.close_at_next_mail:
            how, self.close_at_next_mail = self.close_at_next_mail, None
            if how == "421":
                await server.push("421 4.4.2 closing connection")
            server.transport.close()
            return "250 OK"  # never reaches the client: the connection is closed
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session.peer, envelope.original_content or envelope.content))
        if self.close_after_next_data:
            self.close_after_next_data = False
            server.transport.close()
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    def connections(self) -> list[tuple[str, int]]:
        """The connections the messages came on, in order of first use."""
        return list(dict.fromkeys(peer for peer, _ in self.messages))


@pytest.fixture
def relay():
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=0.5)  # drops a client idle 0.5 s
    controller.start()
    handler.port = port
    yield handler
    controller.stop()


def numbered(i: int) -> OutgoingEmail:
    return OutgoingEmail(sender="Salesflow <no-reply@example.com>", to=f"Ada <ada{i}@example.com>", subject=f"n{i}",
                         html=f"<p>{i}</p>", text=f"{i}", message_id=f"<d-{i}@salesflow.test>",
                         date=dt.datetime.now(dt.UTC), headers={})


def subjects(relay: Relay) -> list[str]:
    return [email.message_from_bytes(content, policy=email.policy.default)["Subject"] for _, content in relay.messages]


async def test_successive_messages_share_one_connection(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    for i in range(3):
        await mailer.send(numbered(i))
    assert subjects(relay) == ["n0", "n1", "n2"]
    assert len(relay.connections()) == 1
    await mailer.aclose()
    assert relay.quits == 1


async def test_concurrent_sends_open_connections_up_to_the_cap(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port, max_connections=2)
    await asyncio.gather(*(mailer.send(numbered(i)) for i in range(6)))
    assert sorted(subjects(relay)) == [f"n{i}" for i in range(6)]
    assert len(relay.connections()) == 2
    await mailer.aclose()


async def test_a_connection_the_relay_dropped_while_idle_is_replaced(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    await mailer.send(numbered(1))
    await asyncio.sleep(0.8)  # the relay closes connections idle for 0.5 s
    await mailer.send(numbered(2))
    assert subjects(relay) == ["n1", "n2"]
    assert len(relay.connections()) == 2
    await mailer.aclose()


async def test_a_connection_idle_longer_than_the_setting_is_not_reused(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port, idle_timeout_s=0.1)
    await mailer.send(numbered(1))
    await asyncio.sleep(0.2)  # (the relay would keep it 0.5 s)
    await mailer.send(numbered(2))
    assert len(relay.connections()) == 2
    await mailer.aclose()


async def test_a_connection_carries_at_most_the_set_number_of_messages(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port, messages_per_connection=2)
    for i in range(5):
        await mailer.send(numbered(i))
    assert subjects(relay) == [f"n{i}" for i in range(5)]
    peers = [peer for peer, _ in relay.messages]
    assert peers[0] == peers[1] != peers[2] == peers[3] != peers[4]
    assert relay.quits == 2  # the two full connections said goodbye
    await mailer.aclose()
    assert relay.quits == 3


@pytest.mark.parametrize("how", ["421", "silently"])
async def test_a_kept_connection_found_closed_at_mail_from_is_retried_once_on_a_fresh_one(relay, how):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    await mailer.send(numbered(1))
    relay.close_at_next_mail = how
    await mailer.send(numbered(2))  # nothing of it had been sent: sent again at once
    assert subjects(relay) == ["n1", "n2"]
    first, second = relay.connections()
    assert relay.mail_commands == [first, first, second]
    await mailer.aclose()


async def test_a_fresh_connection_closed_at_mail_from_is_not_retried(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    relay.close_at_next_mail = "silently"
    with pytest.raises(TransientDeliveryError):
        await mailer.send(numbered(1))
    assert len(relay.mail_commands) == 1 and relay.messages == []
    await mailer.send(numbered(2))
    assert subjects(relay) == ["n2"]


async def test_a_connection_lost_after_the_data_is_not_retried_in_the_same_call(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    await mailer.send(numbered(1))
    relay.close_after_next_data = True  # the relay takes n2, the answer never comes
    with pytest.raises(TransientDeliveryError):  # the delivery worker's retry decides, not this call
        await mailer.send(numbered(2))
    assert subjects(relay) == ["n1", "n2"]  # no silent second copy
    await mailer.send(numbered(3))  # the broken connection was dropped
    assert subjects(relay) == ["n1", "n2", "n3"]
    assert len(relay.connections()) == 2
    await mailer.aclose()


# ---------------------------------------------------------------------------------------------- the message itself
async def test_the_relay_receives_the_message_as_written(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    sent_at = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    subject = "Grüße aus Köln — " + "ä" * 40 + " (a long subject, folded and encoded)"
    text = "Hallo Zoë,\nline two\n" + "z" * 1200  # a line longer than SMTP takes as is
    html = "<p>Hallo Zoë</p>"
    unsubscribe = "<https://crm.example.com/v1/sequences/unsubscribe/" + "t" * 60 + ">"
    await mailer.send(OutgoingEmail(
        sender="Salesflow Büro <no-reply@example.com>", to=formataddr(("Zoë Ünal", "zoe@example.com")),
        subject=subject, html=html, text=text, message_id="<d-42@salesflow.test>", date=sent_at,
        headers={"List-Unsubscribe": unsubscribe, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))
    await mailer.aclose()
    [(_, raw)] = relay.messages
    head, _ = raw.split(b"\r\n\r\n", 1)
    # 7-bit, and folded where there is room: only the unsubscribe link, one word, is longer than 78
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert [line for line in head.split(b"\r\n") if len(line) > 78] == [b"List-Unsubscribe: " + unsubscribe.encode()]
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert received["Subject"] == subject
    assert received["From"].addresses[0].display_name == "Salesflow Büro"
    assert received["From"].addresses[0].addr_spec == "no-reply@example.com"
    assert received["To"].addresses[0].display_name == "Zoë Ünal"
    assert received["Message-ID"] == "<d-42@salesflow.test>"
    assert received["Date"].datetime == sent_at
    assert received["List-Unsubscribe"] == unsubscribe
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in received.iter_parts()] == ["text/plain", "text/html"]
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == text + "\n"
    assert received.get_body(("html",)).get_content().replace("\r\n", "\n") == html + "\n"
    assert not received.defects and not any(part.defects for part in received.iter_parts())


@pytest.mark.parametrize("field", ["to", "subject", "header", "header_name", "sender"])
async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(relay, field):
    good = numbered(1)
    bad = {"to": {"to": "ada@example.com\r\nBcc: eve@example.com"},
           "subject": {"subject": "Hi\nBcc: eve@example.com"},
           "header": {"headers": {"X-Tag": "a\r\nBcc: eve@example.com"}},
           "header_name": {"headers": {"Bcc: eve@example.com\r\nX-Tag": "a"}},
           "sender": {"sender": "Salesflow <no-reply@example.com>\nBcc: eve@example.com"}}[field]
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    with pytest.raises(PermanentDeliveryError):
        await mailer.send(dataclasses.replace(good, **bad))
    assert relay.mail_commands == []


async def test_a_header_the_mailer_writes_cannot_be_given_twice(relay):
    mailer = SmtpMailer(host="127.0.0.1", port=relay.port)
    with pytest.raises(PermanentDeliveryError):
        await mailer.send(dataclasses.replace(numbered(1), headers={"subject": "another"}))
    assert relay.mail_commands == []


@pytest.mark.parametrize("relay_takes_smtputf8", [True, False])
async def test_an_address_in_other_characters_needs_a_relay_that_takes_smtputf8(relay_takes_smtputf8):
    relay, port = Relay(), free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port, enable_SMTPUTF8=relay_takes_smtputf8)
    controller.start()
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=port)
        outgoing = dataclasses.replace(numbered(1), to="Zoë <zoë@exämple.com>", subject="Grüße")
        if not relay_takes_smtputf8:
            with pytest.raises(TransientDeliveryError, match="SMTPUTF8"):  # (another relay may take it)
                await mailer.send(outgoing)
            assert relay.mail_commands == []
            return
        await mailer.send(outgoing)
        await mailer.aclose()
        [(_, raw)] = relay.messages  # headers in UTF-8 as they are (RFC 6532)
        received = email.message_from_string(raw.decode(), policy=email.policy.default)
        assert received["To"].addresses[0].addr_spec == "zoë@exämple.com" and received["Subject"] == "Grüße"
    finally:
        controller.stop()
