"""A service someone else started (`run --url`, the spec's manual flow), as a scenario sees a stack: the null
object of `taskbench.stack.stack.Stack`, so that a scenario asks it what it asks taskbench's own stack. There is
nothing to select, restart or limit; no ledger or telemetry Redis is known; the processes sampled are those its
`/health` names on this machine; no delivery setting is known, and no part of it is ever given up."""

from __future__ import annotations

from collections.abc import Callable

from taskbench.load.client import ServiceClient
from taskbench.measure.ledger import LedgerTail
from taskbench.record.results import DeliveryRecord, Unavailable
from taskbench.stack.stack import StackState


class StartedByHand:
    telemetry_url = ""  # no telemetry Redis: no joined hosts, the ledger unknown
    postgres_url: str | None = None
    api_processes = 1  # as far as the harness knows: its records come from its API

    def __init__(self, client: ServiceClient) -> None:
        self.client = client
        self.unavailable: dict[str, Unavailable] = {}

    def select(self, label: str) -> None:
        """Its one API is already the API."""

    def apply(self, state: StackState) -> None:
        """Its settings are its own: the CLI refuses every flag that would change them."""

    def limit_memory(self) -> None:
        """No container limit reaches a process taskbench did not start."""

    def ledger_tail(self, label: str) -> LedgerTail:
        return LedgerTail(None)

    async def pid_source(self) -> Callable[[], dict[str, int]]:
        return (await self.client.local_pids()).copy

    def dead_parts(self, label: str) -> list[str]:
        return []

    def local_hosts(self) -> set[str]:
        return set()

    def delivery_record(self, label: str) -> DeliveryRecord | None:
        return None

    def broker_sizes(self, label: str) -> dict[str, int] | None:
        """Its broker is not known to the harness."""
        return None
