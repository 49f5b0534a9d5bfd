"""No secret a run generates (Redis, telemetry and API passwords, RabbitMQ's and PostgreSQL's) is left in any file
of its folder, reports and logs included, nor printed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from taskbench.cli import main as cli
from taskbench.errors import UsageError
from taskbench.stack import postgres_server, rabbitmq_server


def _servers_problem() -> str | None:
    """Why a private RabbitMQ or PostgreSQL cannot be had here (the run uses both), or None."""
    try:
        rabbitmq_server.find_rabbitmq_server()
    except UsageError as exc:
        return str(exc)
    return postgres_server.unavailable()


def test_no_generated_secret_is_in_any_file_of_the_run_or_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    problem = _servers_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)
    generated: list[str] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        value = real(nbytes)
        generated.append(value)
        return value

    monkeypatch.setattr(secrets, "token_urlsafe", recording)
    code = cli.main(
        ["run", "--implementations", "fastapi,celery,procrastinate", "--broker", "amqp", "--jobs", "2",
         "--duration", "0.2",
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert len(generated) >= 3  # the private Redis, the telemetry Redis, the APIs' token
    folders = list((tmp_path / "out").iterdir())
    assert len(folders) == 1 and (folders[0] / "stack" / "logs").is_dir()
    files = [p for p in folders[0].rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and any(p.name == "report.html" for p in files)
    for secret in generated:
        assert secret not in printed.out and secret not in printed.err
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"a generated secret is in {path}"
