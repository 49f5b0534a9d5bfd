"""`uvicorn app.main:app`, as the spec runs it: taskbench's service under its old name."""

from taskbench_service.main import app

__all__ = ["app"]
