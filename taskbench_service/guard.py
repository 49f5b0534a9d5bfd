"""Who may call the API: a bearer token on every endpoint but the probes' (/health, /health/sync), a Host header
that names this machine (a page of another site reaching it by DNS rebinding names its own), and JSON bodies only
(a web page's plain form POST is never JSON without a CORS preflight, which this API does not answer). A POST
without a body stays the spec's `curl -X POST …/celery/job` (a job with the defaults).

Plain ASGI, as `limits.BodySizeLimit` is: BaseHTTPMiddleware has been seen holding responses until background
tasks finish (starlette #919).
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health", "/health/sync"})  # probed 10 times a second, and they hold no job or argument
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def host_allowed(host_header: str, extra: frozenset[str]) -> bool:
    """An IP literal (no DNS name to rebind), a loopback name, or a name the stack listed."""
    if host_header.startswith("["):  # [::1]:8000
        host = host_header[1 : host_header.find("]")]
    else:
        host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    host = host.rstrip(".").lower()
    if host in LOOPBACK_NAMES or host in extra:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Guard:
    def __init__(self, app: ASGIApp, token: str, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not host_allowed(headers.get(b"host", b"").decode("latin-1"), self.allowed_hosts):
            await _refuse(send, 421, "this API answers requests for this machine only (Host header refused)")
            return
        if self.token and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token):
                await _refuse(send, 401, "a bearer token is needed (the stack's api.token file; `serve` says where)")
                return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
        if scope["method"] in WITH_BODY and has_body and content_type != b"application/json":
            await _refuse(send, 415, "send the body as JSON (Content-Type: application/json)")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
