"""Email alerts against a real SMTP server (aiosmtpd) on 127.0.0.1 that requires STARTTLS and
AUTH, with a certificate made for the test and trusted through SEGMENT_EXPORT_SMTP_CA_FILE."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from segment_export.cli import cli
from segment_export.config import Settings, load_settings
from segment_export.db.models import AuditEvent, Connection, Run, User
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.errors import ConfigurationError, PermissionDeniedError
from segment_export.exports.alerts import (
    EMAIL_FAILED,
    EMAIL_SENT,
    add_email_address,
    alert_on_finish,
    alert_reason,
    list_email_addresses,
    set_webhook,
)
from segment_export.exports.runs import run_to_completion
from segment_export.users import Role, UserSpec, create_user, disable_user
from tests.ops.helpers import cli_env
from tests.services import require
from tests.world import CLIENT_SECRET, World

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    HAVE_AIOSMTPD = True
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_AIOSMTPD = False

SMTP_USER = "alerts-relay"
SMTP_PASSWORD = "relay-password-7f3a9c0e51"  # the test server's own
MISSING_LIST = "00000000-0000-4000-8000-000000000000"
IMPORT_PATH = "/v3/activities/contacts_json_import"


# -- the SMTP server -------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: str
    tls: bool
    authenticated: bool


@dataclass
class Mailbox:
    host: str
    port: int
    ca_file: Path
    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(Received(
            mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos),
            message=email.message_from_bytes(raw, policy=email.policy.default),
            raw=raw.decode("utf-8", "replace"), tls=session.ssl is not None,
            authenticated=bool(session.authenticated)))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok, handled=False)

    def settings(self, base: Settings, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": self.host, "smtp_port": self.port, "smtp_security": "starttls",
            "smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD,
            "smtp_from": "segment-export@example.com", "smtp_ca_file": self.ca_file,
            "smtp_timeout": 5.0}
        values.update(extra)
        # Validated as production would read them from the environment.
        fields = {**base.model_dump(exclude={"secret_key", "admin_password", "metrics_token"}),
                  **values}
        if base.secret_key is not None:
            fields["secret_key"] = base.secret_key.get_secret_value()
        return Settings(**fields)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 only: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segment-export test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1: STARTTLS required before anything else, then AUTH required."""
    require(HAVE_AIOSMTPD, "aiosmtpd (pip install -e '.[test]')")
    directory = tmp_path / "tls"
    directory.mkdir()
    ca_file, cert_file, key_file = _certificates(directory)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    box = Mailbox(host="127.0.0.1", port=_free_port(), ca_file=ca_file)
    controller = Controller(box, hostname=box.host, port=box.port, ready_timeout=30,
                            tls_context=server_tls, require_starttls=True, auth_required=True,
                            authenticator=box.authenticate, server_hostname="mail.test")
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# -- helpers ---------------------------------------------------------------------------------


def _email_world(world: World, mailbox: Mailbox, **extra: Any) -> None:
    world.settings = mailbox.settings(world.settings, **extra)


def _give_email(world: World, address: str) -> None:
    with world.sessions.begin() as session:
        admin = session.get(User, world.admin.id)
        assert admin is not None
        admin.email = address


def _failing_export(world: World, name: str = "Weekly newsletter") -> Any:
    """An export whose list does not exist in the account: its runs fail for good."""
    world.load_profiles([{"customer_id": 1, "email": "ada@example.com", "first_name": "Ada",
                          "last_name": "Lovelace", "country": "DE"}])
    segment = world.segment("germany", "country = 'DE'")
    with world.sessions.begin() as session:
        return create_export(session, actor=world.admin, spec=ExportSpec(
            name=name, connection_id=world.connection.id, list_id=MISSING_LIST,
            mapping={"email": "email", "first_name": "first_name", "last_name": "last_name"},
            segment_ids=[segment]))


def _events(world: World, action: str, run_id: str | None = None) -> list[AuditEvent]:
    with world.sessions() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action)
        if run_id is not None:
            stmt = stmt.where(AuditEvent.target_id == run_id)
        return list(session.scalars(stmt))


def _secrets(world: World) -> list[str]:
    with world.sessions() as session:
        connection = session.get(Connection, world.connection.id)
        assert connection is not None
        tokens = [connection.access_token or "", connection.refresh_token or ""]
    key = world.settings.secret_key.get_secret_value() if world.settings.secret_key else ""
    return [s for s in [SMTP_PASSWORD, CLIENT_SECRET, key, *tokens] if s]


def _no_secret_in(text: str, world: World) -> None:
    leaked = [s[:6] + "…" for s in _secrets(world) if s in text]
    assert not leaked, f"secrets in the text: {leaked}"


# -- tests -----------------------------------------------------------------------------------


def test_a_permanent_failure_emails_the_admins_and_chosen_addresses_over_starttls(
        world: World, mailbox: Mailbox) -> None:
    _email_world(world, mailbox, public_url="https://exports.example.com/")
    _give_email(world, "Admin@Example.com")
    with world.sessions.begin() as session:
        add_email_address(session, actor=world.admin, address="oncall@example.org")
        create_user(
            session,
            spec=UserSpec(username="gone", role=Role.ADMIN, email="gone@example.com"),
            actor=world.admin,
        )
        disable_user(session, actor=world.admin, username="gone")
        create_user(
            session,
            spec=UserSpec(username="cory", role=Role.CONTRIBUTOR, email="cory@example.com"),
            actor=world.admin,
        )
    export = _failing_export(world)

    run = world.run(export)

    assert run.status == "failed"
    (received,) = mailbox.messages
    assert received.rcpt_tos == ["admin@example.com", "oncall@example.org"]
    assert received.mail_from == "segment-export@example.com"
    assert received.tls, "the message was not sent over STARTTLS"
    assert received.authenticated
    assert mailbox.logins == [SMTP_USER]
    message = received.message
    assert message["Subject"] == '[segment-export] Export "Weekly newsletter" failed'
    assert message["From"] == "segment-export@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Segment-Export-Run"] == run.id
    text = message.get_content()
    assert 'The export "Weekly newsletter" failed for good' in text
    assert f"Run: {run.id}" in text
    assert f"Error: {run.message}" in text
    assert f"Open the run: https://exports.example.com/runs/{run.id}" in text
    _no_secret_in(received.raw, world)
    (sent,) = _events(world, EMAIL_SENT, run.id)
    assert sent.details == {"reason": "failed", "smtp_host": "127.0.0.1", "recipients": 2}

    # Not twice for the same run: resuming the ended run, or alerting on it again, sends nothing.
    again = run_to_completion(run.id, deps=world.deps(), backoff=0.01)
    assert again.status == "failed"
    alert_on_finish(world.deps(), again)
    assert len(mailbox.messages) == 1
    assert len(_events(world, EMAIL_SENT, run.id)) == 1


def test_rejections_over_the_threshold_email_counts_and_reasons_never_the_rows(
        world: World, mailbox: Mailbox) -> None:
    _email_world(world, mailbox)
    _give_email(world, "admin@example.com")
    world.load_profiles([
        {"customer_id": "cust-grace", "email": "good@example.com", "first_name": "Grace",
         "last_name": "Hopper", "country": "DE"},
        {"customer_id": "cust-zebulon", "email": "not-an-address", "first_name": "Zebulon",
         "last_name": "Quimby", "country": "DE"},
        {"customer_id": "cust-xanthe", "email": "also@@broken", "first_name": "Xanthe",
         "last_name": "Vorhees", "country": "DE"},
        {"customer_id": "cust-wilhelmina", "email": None, "first_name": "Wilhelmina",
         "last_name": "Umber", "country": "DE"},
    ])
    export = world.export("Spring promo", [world.segment("all", "country = 'DE'")],
                          rejected_alert_threshold=0.25)

    # A dry run (a preview someone is looking at) sends nothing to Constant Contact, and no
    # alert either.
    preview = world.run(export, dry_run=True)
    assert preview.dry_run
    assert preview.counts.get("rejected_locally") == 3, preview.counts
    assert mailbox.messages == []

    run = world.run(export)

    assert run.status == "succeeded_with_rejections"
    (received,) = mailbox.messages
    assert received.rcpt_tos == ["admin@example.com"]
    assert received.tls
    message = received.message
    assert message["Subject"] == ('[segment-export] Export "Spring promo": 3 of 4 rows '
                                  "rejected (75%)")
    text = message.get_content()
    assert "rejected 3 of 4 rows (75.0%), over its alert threshold of 25%" in text
    assert "  invalid_email: 2 row(s) - " in text
    assert "  missing_email: 1 row(s) - " in text
    assert text.index("invalid_email") < text.index("missing_email")  # most frequent first
    assert "Open the run" not in text  # no SEGMENT_EXPORT_PUBLIC_URL, no link
    for personal in ("good@example.com", "not-an-address", "also@@broken", "Grace", "Hopper",
                     "Zebulon", "Quimby", "Xanthe", "Wilhelmina", "cust-"):
        assert personal not in received.raw, personal
    _no_secret_in(received.raw, world)


def test_under_the_threshold_or_without_one_nobody_is_emailed(
        world: World, mailbox: Mailbox) -> None:
    _email_world(world, mailbox)
    _give_email(world, "admin@example.com")
    world.load_profiles([
        {"customer_id": 1, "email": "a@example.com", "first_name": "A", "last_name": "B",
         "country": "DE"},
        {"customer_id": 2, "email": "broken", "first_name": "A", "last_name": "B",
         "country": "DE"},
    ])
    segment = world.segment("all", "country = 'DE'")
    high = world.export("high", [segment], rejected_alert_threshold=0.6)
    none = world.export("none", [segment])
    assert world.run(high).status == "succeeded_with_rejections"
    assert world.run(none).status == "succeeded_with_rejections"
    assert mailbox.messages == []


def test_a_retried_run_is_emailed_once_after_its_last_attempt(
        world: World, mailbox: Mailbox) -> None:
    _email_world(world, mailbox)
    _give_email(world, "admin@example.com")
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    export = world.export("flaky", [world.segment("all", "country = 'DE'")])
    world.control.inject_fault(kind="status", status=503, count=10_000, path_prefix=IMPORT_PATH)

    run = world.run(export)

    world.control.clear_faults()
    assert run.status == "failed"
    assert run.attempt == 3
    (received,) = mailbox.messages
    text = received.message.get_content()
    assert "Attempts: 3" in text
    assert "Error kind: retriable" in text
    assert len(_events(world, "run.claimed", run.id)) == 3
    assert len(_events(world, EMAIL_SENT, run.id)) == 1


def test_a_broken_mail_server_never_changes_the_run_nor_holds_it_up(
        world: World, mailbox: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    _give_email(world, "admin@example.com")
    base = world.settings
    export = _failing_export(world)
    caplog.set_level(logging.INFO, logger="segment_export")

    # Nothing listens on the port: refused at once.
    world.settings = mailbox.settings(base, smtp_port=_free_port())
    refused = world.run(export)
    assert refused.status == "failed"
    assert "list" in (refused.message or "").lower()
    (failed,) = _events(world, EMAIL_FAILED, refused.id)
    assert "ConnectionRefusedError" in failed.details["error"]

    # A server that accepts the connection and never answers: the run waits at most the timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    try:
        world.settings = mailbox.settings(base, smtp_port=silent.getsockname()[1],
                                          smtp_timeout=0.5)
        started = time.monotonic()
        stuck = world.run(export)
        waited = time.monotonic() - started
        assert stuck.status == "failed"
        assert stuck.message == refused.message
        assert waited < 5, f"the run waited {waited:.1f}s for the mail server"
        deadline = time.monotonic() + 5
        while not _events(world, EMAIL_FAILED, stuck.id) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        silent.close()
    (timed_out,) = _events(world, EMAIL_FAILED, stuck.id)
    assert "timed out" in timed_out.details["error"].lower()

    # A wrong password: refused by the server, logged without the password.
    world.settings = mailbox.settings(base, smtp_password="wrong-password-0c9d8e7f")
    denied = world.run(export)
    assert denied.status == "failed"
    (auth_failed,) = _events(world, EMAIL_FAILED, denied.id)
    assert "SMTPAuthenticationError" in auth_failed.details["error"]
    assert mailbox.messages == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert email to 1 recipient(s) through 127.0.0.1 failed" in logged
    for secret in (SMTP_PASSWORD, "wrong-password-0c9d8e7f"):
        assert secret not in logged
        assert all(secret not in str(e.details) for e in _events(world, EMAIL_FAILED))


def test_no_clear_text_and_no_unverified_certificate(world: World, mailbox: Mailbox) -> None:
    """The server refuses mail without STARTTLS, and the client refuses a certificate it
    cannot verify: in neither case does a message (or the password) travel."""
    _give_email(world, "admin@example.com")
    base = world.settings
    export = _failing_export(world)

    # security=none without credentials: the server refuses mail before STARTTLS.
    world.settings = mailbox.settings(base, smtp_security="none", smtp_username=None,
                                      smtp_password=None)
    plain = world.run(export)
    (failed,) = _events(world, EMAIL_FAILED, plain.id)
    assert "530" in failed.details["error"]
    assert "STARTTLS" in failed.details["error"]

    # security=none with credentials (allowed only because the host is loopback): the server
    # offers no AUTH before TLS, so the password is never sent in clear text either.
    world.settings = mailbox.settings(base, smtp_security="none")
    plain_auth = world.run(export)
    (failed,) = _events(world, EMAIL_FAILED, plain_auth.id)
    assert "AUTH extension not supported" in failed.details["error"]

    # The system's CAs do not know the test CA: verification fails, nothing is sent.
    world.settings = mailbox.settings(base, smtp_ca_file=None)
    unverified = world.run(export)
    (failed,) = _events(world, EMAIL_FAILED, unverified.id)
    assert "CERTIFICATE_VERIFY_FAILED" in failed.details["error"]

    # The same server by another name than the certificate's (localhost): refused too.
    world.settings = mailbox.settings(base, smtp_host="localhost")
    wrong_name = world.run(export)
    assert len(_events(world, EMAIL_FAILED, wrong_name.id)) == 1

    assert mailbox.messages == []
    assert mailbox.logins == []
    assert {plain.status, plain_auth.status, unverified.status, wrong_name.status} == {"failed"}


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(world: World,
                                                                      mailbox: Mailbox) -> None:
    """A server (or a man in the middle) that hides STARTTLS gets nothing, not a clear-text
    message: the client refuses to go on."""
    plain_box = Mailbox(host="127.0.0.1", port=_free_port(), ca_file=mailbox.ca_file)
    require(HAVE_AIOSMTPD, "aiosmtpd (pip install -e '.[test]')")
    controller = Controller(plain_box, hostname=plain_box.host, port=plain_box.port,
                            ready_timeout=30, server_hostname="plain.test")
    controller.start()
    try:
        _give_email(world, "admin@example.com")
        world.settings = plain_box.settings(world.settings)
        run = world.run(_failing_export(world))
    finally:
        controller.stop()
    assert run.status == "failed"
    assert plain_box.messages == []
    (failed,) = _events(world, EMAIL_FAILED, run.id)
    assert "STARTTLS extension not supported" in failed.details["error"]


def test_recipients_are_chosen_by_admins_validated_and_audited(
        world: World, mailbox: Mailbox) -> None:
    settings = mailbox.settings(world.settings)
    env = cli_env(settings, SEGMENT_EXPORT_SMTP_HOST=mailbox.host,
                  SEGMENT_EXPORT_SMTP_PORT=str(mailbox.port),
                  SEGMENT_EXPORT_SMTP_USERNAME=SMTP_USER,
                  SEGMENT_EXPORT_SMTP_PASSWORD=SMTP_PASSWORD,
                  SEGMENT_EXPORT_SMTP_FROM="segment-export@example.com",
                  SEGMENT_EXPORT_SMTP_CA_FILE=str(mailbox.ca_file))

    def cli_run(*args: str, ok: bool = True) -> str:
        """The command's output, or (``ok=False``) the product error that stopped it."""
        result = CliRunner().invoke(cli, list(args), env=env)
        if ok:
            assert result.exit_code == 0, result.output
            return result.output
        assert isinstance(result.exception, ConfigurationError), result.output
        return str(result.exception)

    with world.sessions.begin() as session:
        set_webhook(session, actor=world.admin, url="https://hooks.example.com/x")
    assert "Alert emails also go to ops@example.org." in cli_run(
        "alerts", "email", "add", " Ops@Example.org ")
    cli_run("alerts", "email", "add", "pager@example.net")
    assert "not an email address" in cli_run("alerts", "email", "add", "ops@example",
                                             ok=False).lower()
    assert "not an email address" in cli_run(
        "alerts", "email", "add", "x@example.com\r\nBcc: evil@example.com", ok=False).lower()
    cli_run("alerts", "email", "remove", "pager@example.net")
    assert "does not receive" in cli_run("alerts", "email", "remove", "pager@example.net",
                                         ok=False)
    # Clearing the webhook keeps the addresses.
    cli_run("alerts", "clear")
    assert cli_run("alerts", "email", "list") == "ops@example.org\tadded\n"
    # The first admin has no address until one is set.
    assert "Not an email address" in cli_run("users", "set-email", "admin", "boss", ok=False)
    cli_run("users", "set-email", "admin", "Boss@Example.com")
    assert cli_run("alerts", "email", "list") == ("boss@example.com\tadmin\n"
                                                  "ops@example.org\tadded\n")
    shown = cli_run("alerts", "show")
    assert "No alert webhook is set." in shown
    assert "Email: through 127.0.0.1 (starttls) from segment-export@example.com" in shown
    assert SMTP_PASSWORD not in shown
    with world.sessions() as session:
        assert list_email_addresses(session) == ["ops@example.org"]
    added = _events(world, "alerts.email_address_added")
    assert sorted(e.details["address"] for e in added) == ["ops@example.org",
                                                           "pager@example.net"]
    assert [e.details["address"] for e in _events(world, "alerts.email_address_removed")] == [
        "pager@example.net"]
    assert {e.actor_name for e in added} == {"admin"}

    with world.sessions.begin() as session:
        viewer = create_user(
            session, spec=UserSpec(username="val", role=Role.VIEWER), actor=world.admin
        )
    with world.sessions() as session, pytest.raises(PermissionDeniedError):
        add_email_address(session, actor=viewer, address="val@example.com")

    assert "Test message sent to boss@example.com, ops@example.org." in cli_run(
        "alerts", "email", "test")
    (received,) = mailbox.messages
    assert received.tls
    assert received.rcpt_tos == ["boss@example.com", "ops@example.org"]
    assert received.message["Subject"] == "[segment-export] Test of the alert email"
    assert len(_events(world, "alerts.email_tested")) == 1
    (email_set,) = _events(world, "user.email_set")
    assert email_set.details["email"] == "boss@example.com"
    cli_run("users", "set-email", "admin", "--clear")
    assert cli_run("alerts", "email", "list") == "ops@example.org\tadded\n"


def test_smtp_settings_refuse_clear_text_credentials_and_half_configurations(
        tmp_path: Path) -> None:
    common = {"data_dir": tmp_path, "smtp_from": "alerts@example.com"}
    with pytest.raises(ConfigurationError, match="clear text"):
        load_settings(**common, smtp_host="smtp.example.com", smtp_security="none",
                      smtp_username="u", smtp_password="p-0123456789")
    for loopback in ("127.0.0.1", "localhost", "::1"):
        assert load_settings(**common, smtp_host=loopback, smtp_security="none",
                             smtp_username="u", smtp_password="p-0123456789").smtp_host
    # Without credentials, clear text to an internal relay is the operator's choice.
    assert load_settings(**common, smtp_host="relay.internal", smtp_security="none")
    with pytest.raises(ConfigurationError, match="SMTP_FROM"):
        load_settings(data_dir=tmp_path, smtp_host="smtp.example.com")
    with pytest.raises(ConfigurationError, match="go together"):
        load_settings(**common, smtp_host="smtp.example.com", smtp_username="u")
    with pytest.raises(ConfigurationError, match="smtp_security"):
        load_settings(**common, smtp_host="smtp.example.com", smtp_security="tls")
    defaults = load_settings(data_dir=tmp_path)
    assert defaults.smtp_host is None
    assert defaults.smtp_security == "starttls"


def test_a_dry_run_never_calls_for_an_alert(world: World) -> None:
    export = _failing_export(world)
    for status in ("failed", "succeeded_with_rejections"):
        run = Run(export_id=export.id, status=status, dry_run=True,
                  counts={"valid": 1, "rejected_locally": 9})
        export.rejected_alert_threshold = 0.1
        assert alert_reason(run, export) is None
        run.dry_run = False
        assert alert_reason(run, export) is not None


def test_each_recipient_reads_the_alert_in_their_language(world: World,
                                                          mailbox: Mailbox) -> None:
    # The admin chose Malay; oncall@ is no user's address and gets the configured default
    # (English), as does a user who chose no language.
    _email_world(world, mailbox)
    _give_email(world, "admin@example.com")
    with world.sessions.begin() as session:
        admin = session.get(User, world.admin.id)
        assert admin is not None
        admin.language = "ms"
        add_email_address(session, actor=world.admin, address="oncall@example.org")
        create_user(
            session,
            spec=UserSpec(username="bea", role=Role.ADMIN, email="bea@example.com"),
            actor=world.admin,
        )
    export = _failing_export(world, name="Surat berita mingguan")

    run = world.run(export)

    assert run.status == "failed"
    by_language = {r.message["Content-Language"]: r for r in mailbox.messages}
    assert set(by_language) == {"en", "ms"}
    assert by_language["ms"].rcpt_tos == ["admin@example.com"]
    assert by_language["en"].rcpt_tos == ["bea@example.com", "oncall@example.org"]
    malay = by_language["ms"].message
    assert malay["Subject"] == '[segment-export] Eksport "Surat berita mingguan" gagal'
    text = malay.get_content()
    assert 'Eksport "Surat berita mingguan" gagal sepenuhnya' in text
    assert f"Larian: {run.id}" in text
    assert "Status: failed" in text  # codes stay codes
    assert "failed for good" not in text
    english = by_language["en"].message
    assert english["Subject"] == '[segment-export] Export "Surat berita mingguan" failed'
    assert f"Error: {run.message}" in english.get_content()
    # Sent once for the run, to all three, whatever the number of messages.
    (sent,) = _events(world, EMAIL_SENT, run.id)
    assert sent.details["recipients"] == 3


def test_the_configured_default_language_covers_addresses_of_no_user(
        world: World, mailbox: Mailbox) -> None:
    _email_world(world, mailbox, alert_language="ms")
    with world.sessions.begin() as session:
        add_email_address(session, actor=world.admin, address="oncall@example.org")
    world.load_profiles([
        {"customer_id": 1, "email": "ok@example.com", "first_name": "A", "last_name": "B",
         "country": "DE"},
        {"customer_id": 2, "email": "broken", "first_name": "A", "last_name": "B",
         "country": "DE"},
    ])
    export = world.export("Promosi", [world.segment("all", "country = 'DE'")],
                          rejected_alert_threshold=0.25)

    run = world.run(export)

    assert run.status == "succeeded_with_rejections"
    (received,) = mailbox.messages
    assert received.rcpt_tos == ["oncall@example.org"]
    message = received.message
    assert message["Content-Language"] == "ms"
    # CLDR ms percentages, Malay words, the reason's description from the catalogue.
    assert message["Subject"] == ('[segment-export] Eksport "Promosi": 1 daripada 2 baris '
                                  "ditolak (50%)")
    text = message.get_content()
    assert "menolak 1 daripada 2 baris (50.0%), melebihi ambang amarannya sebanyak 25%" in text
    assert "  invalid_email: 1 baris - Sintaks alamat e-mel tidak sah." in text
