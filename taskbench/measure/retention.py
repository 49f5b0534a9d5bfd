"""What a queue leaves in its broker once its jobs are done: the bytes of the keys (Redis) or tables (PostgreSQL)
it wrote, read before a scenario's burst and after its jobs end. The difference, per job, answers "what does the
broker keep that nobody reads?" (results never expired, job hashes, streams never trimmed).

Redis: every key of the queue's patterns (its namespace's and those whose prefix the queue fixes, the same that
`Implementation.forget` deletes on someone else's server), but taskbench's own records, beats and ledger, each
sized with `MEMORY USAGE` (the key, its value and Redis's overhead for it). PostgreSQL: `pg_total_relation_size` of
every table in the namespace's schema (rows, indexes, TOAST). RabbitMQ: not read.

What a burst kept is what it added, key by key (`grown`): a key gone between the two reads (an earlier scenario's
result expiring, another queue's key in the same namespace) is not subtracted, so the figure cannot go below zero
for what other queues or earlier bursts let go meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import redis

from taskbench_wire.namespace import is_own_key, schema_name

SCAN_COUNT = 1000
PIPELINE = 500  # MEMORY USAGE calls per round trip


def redis_sizes(client: redis.Redis, namespace: str, patterns: Iterable[str]) -> dict[str, int]:
    keys = {key for pattern in patterns for key in client.scan_iter(match=pattern, count=SCAN_COUNT)}
    counted = sorted(k for k in keys if not is_own_key(k.decode(errors="replace"), namespace))
    sizes: dict[str, int] = {}
    for start in range(0, len(counted), PIPELINE):
        batch = counted[start : start + PIPELINE]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)  # every element of a collection, not a sample of 5
        for key, size in zip(batch, pipe.execute(), strict=True):
            if size is not None:  # a key gone since the scan: None
                sizes[key.decode(errors="replace")] = int(size)
    return sizes


def postgres_sizes(url: str, namespace: str) -> dict[str, int]:
    query = (
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')"
    )
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(query, (schema_name(namespace),)).fetchall()
    return {str(name): int(size) for name, size in rows}


def grown(before: dict[str, int], after: dict[str, int]) -> int:
    """What was added between the two reads, key by key: new keys whole, grown ones by their growth; keys that
    shrank or went are not subtracted."""
    return sum(max(0, size - before.get(key, 0)) for key, size in after.items())
