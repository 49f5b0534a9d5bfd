"""What a queue leaves in its broker once its jobs are done: the bytes of the keys (Redis) or tables (PostgreSQL)
it wrote, read before a scenario's burst and after its jobs end. The difference, per job, answers "what does the
broker keep that nobody reads?" (results never expired, job hashes, streams never trimmed).

Redis: every key of the queue's patterns (its namespace's and those whose prefix the queue fixes, the same that
`Implementation.forget` deletes on someone else's server), but taskbench's own records, beats and ledger, summed
with `MEMORY USAGE` (the key, its value and Redis's overhead for it). PostgreSQL: `pg_total_relation_size` of every
table in the namespace's schema (rows, indexes, TOAST). RabbitMQ: not read.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import redis

from taskbench_wire.namespace import is_own_key, schema_name

SCAN_COUNT = 1000
PIPELINE = 500  # MEMORY USAGE calls per round trip


def redis_bytes(client: redis.Redis, namespace: str, patterns: Iterable[str]) -> int:
    keys = {key for pattern in patterns for key in client.scan_iter(match=pattern, count=SCAN_COUNT)}
    counted = sorted(k for k in keys if not is_own_key(k.decode(errors="replace"), namespace))
    total = 0
    for start in range(0, len(counted), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for key in counted[start : start + PIPELINE]:
            pipe.memory_usage(key, samples=0)  # every element of a collection, not a sample of 5
        total += sum(size or 0 for size in pipe.execute())  # a key gone since the scan: None
    return total


def postgres_bytes(url: str, namespace: str) -> int:
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')"
    )
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(query, (schema_name(namespace),)).fetchone()
    return int(row[0]) if row else 0
