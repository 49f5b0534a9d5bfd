"""The `BaseHTTPMiddleware` a FastAPI user adds for logging or auth, doing nothing, switched on by
TASKBENCH_MIDDLEWARE=base-http: background tasks behind it have been seen held or cancelled (starlette #919,
#1438, #3458; fastapi #2215, #5606), so the harness measures the app with and without it."""

from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from taskbench_wire.enums import Middleware

MIDDLEWARES = tuple(m.value for m in Middleware)


class PassThrough(BaseHTTPMiddleware):
    """Only `call_next`: whatever it changes is BaseHTTPMiddleware's own doing."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)
