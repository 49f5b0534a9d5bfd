"""What a namespace (taskbench_wire.env.NAMESPACE) is named as where a plain identifier is needed: the PostgreSQL
schema the PostgreSQL queues live in, which the service's set-up creates and marks and the harness drops."""

from __future__ import annotations

import re

# The set-up's mark on a schema it created (COMMENT ON SCHEMA): it installs only into a schema so marked, and the
# harness drops only such a schema (taskbench.stack.postgres_server.drop_namespace).
SCHEMA_MARK = "taskbench namespace"


def schema_name(namespace: str) -> str:
    """A plain identifier (`taskbench-1a2b3c4d` → `taskbench_1a2b3c4d`): lower case, every other character than
    [a-z0-9_] as `_` (PgQueuer takes no quoted schema name)."""
    name = re.sub(r"[^a-z0-9_]", "_", namespace.lower())
    return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"


# taskbench's own keys in a namespace beside a queue's (`{namespace}:job:<id>` the service's records, `jobs:` their
# index, `refused:`, `workers:` the beats, `ledger:`): not what the queue keeps, so not counted as what it retains.
OWN_KEYS = ("job", "jobs", "refused", "workers", "ledger")


def is_own_key(key: str, namespace: str) -> bool:
    return any(key.startswith(f"{namespace}:{own}:") for own in OWN_KEYS)
