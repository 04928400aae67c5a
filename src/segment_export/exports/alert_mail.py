"""Alert emails: what one says, and sending it over SMTP with verified TLS (stdlib only)."""

from __future__ import annotations

import base64
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from babel.numbers import format_percent

from segment_export import languages
from segment_export.config import Settings
from segment_export.errors import ConfigurationError
from segment_export.languages import N_
from segment_export.log import redact, register_secret

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
Reason = Literal["failed", "rejections_over_threshold"]


@dataclass(frozen=True, slots=True)
class RunAlert:
    """What an alert says about one run: names, counts and reason codes, never contact data."""

    reason: Reason
    run_id: str
    export_name: str
    status: str
    message: str | None
    error_kind: str | None
    attempt: int
    counts: dict[str, object]
    rejected: int = 0
    in_scope: int = 0
    threshold: float | None = None
    # (reason code, rows) for the most frequent rejection reasons, most frequent first.
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    run_url: str | None = None
    message_text: dict[str, object] | None = None  # the run's message as a languages.Text


def _one_line(text: str, limit: int = 120) -> str:
    """``text`` fit for a header: control and separator characters become spaces."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in {"C", "Z"} else c for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _share(value: float, pattern: str, language: str) -> str:
    return format_percent(value, pattern, locale=language)


def subject(alert: RunAlert, language: str = languages.DEFAULT) -> str:
    def t(msgid: str, /, **values: object) -> str:
        return languages.translations(language).gettext(msgid) % values

    name = _one_line(alert.export_name, 80)
    if alert.reason == "failed":
        return t(N_('[segment-export] Export "%(name)s" failed'), name=name)
    share = alert.rejected / alert.in_scope if alert.in_scope else 0.0
    return t(N_('[segment-export] Export "%(name)s": %(rejected)s of %(total)s rows rejected '
                "(%(share)s)"), name=name, rejected=languages.number(alert.rejected, language),
             total=languages.number(alert.in_scope, language),
             share=_share(share, "#,##0%", language))


def body(alert: RunAlert, descriptions: dict[str, str],
         language: str = languages.DEFAULT) -> str:
    """The plain-text body in ``language``; ``descriptions`` explains each rejection reason
    code (catalogue msgids). Codes (status, reason, count names) stay as they are: they are
    what the API, the CLI and the webhook say."""
    catalogue = languages.translations(language)

    def t(msgid: str, /, **values: object) -> str:
        return catalogue.gettext(msgid) % values

    def n(value: object) -> str:
        return languages.number(value, language)

    lines: list[str] = []
    if alert.reason == "failed":
        said = languages.shown(alert.message, alert.message_text, language)
        lines += [t(N_('The export "%(name)s" failed for good: its automatic retries, if any, '
                       "are used up. Batches confirmed before the failure stay delivered."),
                    name=alert.export_name),
                  "",
                  t(N_("Error: %(message)s"), message=redact(said or t(N_("(no message)"))))]
        if alert.error_kind:
            lines.append(t(N_("Error kind: %(kind)s"), kind=alert.error_kind))
    else:
        share = alert.rejected / alert.in_scope if alert.in_scope else 0.0
        threshold = (_share(alert.threshold, "#,##0%", language)
                     if alert.threshold is not None else "?")
        lines += [t(N_('The export "%(name)s" finished, but rejected %(rejected)s of %(total)s '
                       "rows (%(share)s), over its alert threshold of %(threshold)s."),
                    name=alert.export_name, rejected=n(alert.rejected), total=n(alert.in_scope),
                    share=_share(share, "#,##0.0%", language), threshold=threshold), ""]
        if alert.top_reasons:
            lines.append(t(N_("Most frequent reasons:")))
            for code, rows in alert.top_reasons:
                text = descriptions.get(code)
                lines.append(t(N_("  %(code)s: %(rows)s row(s)"), code=code, rows=n(rows))
                             + (f" - {catalogue.gettext(text)}" if text else ""))
        lines.append("")
        lines.append(t(N_("Rejected rows are sent again on the next run; the run's "
                          "rejected-rows report gives the reason for each.")))
    lines += ["", t(N_("Run: %(run)s"), run=alert.run_id),
              t(N_("Status: %(status)s"), status=alert.status),
              t(N_("Attempts: %(count)s"), count=n(alert.attempt))]
    shown = {k: v for k, v in alert.counts.items() if isinstance(v, int | float)}
    if shown:
        lines.append(t(N_("Counts: %(counts)s"),
                       counts=", ".join(f"{k}={v}" for k, v in sorted(shown.items()))))
    if alert.run_url:
        lines += ["", t(N_("Open the run: %(url)s"), url=alert.run_url)]
    lines += ["", "-- ", t(N_("segment-export. Admins change who receives these with "
                              "`segment-export alerts email`."))]
    return "\n".join(lines) + "\n"


def compose(alert: RunAlert, *, sender: str, recipients: list[str],
            descriptions: dict[str, str], language: str = languages.DEFAULT) -> EmailMessage:
    """The alert email in ``language`` (Content-Language says which)."""
    message = EmailMessage()
    message["Subject"] = subject(alert, language)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid("alert", domain=sender.rpartition("@")[2])
    # RFC 3834: machines should not answer it (no vacation replies back to the sender).
    message["Auto-Submitted"] = "auto-generated"
    message["X-Segment-Export-Run"] = alert.run_id
    message.set_content(body(alert, descriptions, language))
    message["Content-Language"] = language  # after set_content, which drops Content-* headers
    return message


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A verifying context: the system's CAs, or only those of SEGMENT_EXPORT_SMTP_CA_FILE."""
    cafile = str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            N_("SEGMENT_EXPORT_SMTP_CA_FILE %(cafile)s cannot be read as PEM certificates: "
               "%(error)s"),
            values={"cafile": cafile, "error": exc},
            field="smtp_ca_file") from exc


def send(settings: Settings, message: EmailMessage, recipients: list[str]) -> None:
    """Deliver ``message`` to ``recipients``; raises OSError / smtplib.SMTPException on failure.

    STARTTLS is required when the mode says so (a server that does not offer it is refused,
    nothing goes in clear text) and the certificate and host name are always verified.
    """
    if settings.smtp_host is None or settings.smtp_from is None:
        raise ConfigurationError(N_("Email alerts are not set up (SEGMENT_EXPORT_SMTP_HOST, "
                                    "SEGMENT_EXPORT_SMTP_FROM)"), field="smtp_host")
    host = settings.smtp_host
    mode = settings.smtp_security
    port = settings.smtp_port or DEFAULT_PORTS[mode]
    timeout = settings.smtp_timeout
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    register_secret(password)
    context = tls_context(settings) if mode != "none" else None
    client: smtplib.SMTP
    if mode == "ssl":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        client.ehlo()
        if mode == "starttls":
            client.starttls(context=context)  # SMTPNotSupportedError when it is not offered
            client.ehlo()
        if settings.smtp_username and password is not None:
            client.login(settings.smtp_username, password)
        client.send_message(message, from_addr=settings.smtp_from, to_addrs=recipients)


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """``exc`` as one log-safe line: the SMTP password (and its AUTH encodings) removed."""
    text = f"{type(exc).__name__}: {exc}"
    if settings.smtp_password is not None:
        password = settings.smtp_password.get_secret_value()
        user = settings.smtp_username or ""
        encodings = {
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        }
        for secret in sorted(encodings, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "[REDACTED]")
    return redact(_one_line(text, 500))
