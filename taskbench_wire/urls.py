"""URLs as both sides print and read them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def redacted(url: str) -> str:
    """The URL with its password replaced by `**`, fit for a log line or a report (kombu's
    `maybe_sanitize_url` does the same, but only the queues that use kombu have it)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:**@{netloc[1]}"))
