"""The SMTP adapter against real aiosmtpd servers: STARTTLS and implicit TLS with credentials, certificate
checks, and how refusals are classified (transient vs permanent)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
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
        [(encrypted, login, content)] = recorder.sessions
        assert encrypted and login == b"mailer"
        assert "Message-ID: <d-1@salesflow.test>" in content and "List-Unsubscribe: <https://x/u>" in content

        with pytest.raises(TransientDeliveryError):  # an untrusted certificate is refused
            await SmtpMailer(host="127.0.0.1", port=port, username="mailer", password="s3cret",
                             starttls=mode == "starttls", tls=mode == "implicit_tls", timeout_s=5).send(message())
        assert len(recorder.sessions) == 1
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
    finally:
        controller.stop()
    with pytest.raises(TransientDeliveryError):  # nobody listening
        await SmtpMailer(host="127.0.0.1", port=port, timeout_s=2).send(message())
