"""arq: one asyncio worker process over Redis, `max_jobs` jobs at once, polling a sorted set.

`--app arq=package.module:WorkerSettings` measures the user's own worker settings as `arq+app`: read before
anything starts in a child of arq's environment (`read_app`), every setting as they wrote it (job_timeout,
keep_result, max_tries, retry_jobs, poll_delay, job_completion_wait, serializer, their functions beside
taskbench's) but its connections (taskbench's Redis), its queue's name (in the run's namespace) and max_jobs
(taskbench's --concurrency); its delivery is its own max_tries, and the worker faults run it once, as `app`."""

from __future__ import annotations

from collections.abc import Mapping

from taskbench.capacity import Capacity
from taskbench.errors import UsageError
from taskbench.implementations import user_app
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    JSON_ON_EXTERNAL,
    Delivery,
    Implementation,
    Outcome,
    event_loop_model,
    python_module,
)
from taskbench.implementations.user_app import AppOptions
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health

MECHANISM = (
    "the job stays in arq's queue under an in-progress key that expires job_timeout + 10 s after it started "
    "(arq/worker.py Worker.start_jobs; never renewed; job_timeout = max_jobs × the redelivery timeout here), "
    "then any worker's poll takes it again and Worker.run_job counts the try against max_tries"
)


class ArqOptions(AppOptions):
    """arq has no flags of its own; `--app` gives it the user's WorkerSettings (`arq+app`)."""


# After user_app.PROBE_HEAD, in arq's environment: the settings arq's CLI would read (arq.worker.get_kwargs).
APP_PROBE = r"""
from arq.worker import get_kwargs
if not isinstance(found, (type, dict)):
    answer(error=f"{path} is a {type(found).__module__}.{type(found).__qualname__}, not arq WorkerSettings (a class "
           "or a dict)")
kwargs = dict(found) if isinstance(found, dict) else get_kwargs(found)
if not kwargs.get("functions") and not kwargs.get("cron_jobs"):
    answer(error=f"{path} has no functions: not arq WorkerSettings")
serializer = kwargs.get("job_serializer")
names = [getattr(f, "name", None) or getattr(f, "__qualname__", repr(f)) for f in kwargs.get("functions", ())]
answer(settings={
    "queue_name": text(kwargs.get("queue_name", "arq:queue")),
    "functions": ", ".join(names),
    "max_jobs": text(kwargs.get("max_jobs", 10)),
    "job_timeout": text(kwargs.get("job_timeout", 300)),
    "keep_result": text(kwargs.get("keep_result", 3600)),
    "max_tries": text(kwargs.get("max_tries", 5)),
    "retry_jobs": text(kwargs.get("retry_jobs", True)),
    "poll_delay": text(kwargs.get("poll_delay", 0.5)),
    "job_completion_wait": text(kwargs.get("job_completion_wait", 0)),
    "serializer": "pickle" if serializer is None else getattr(serializer, "__qualname__", repr(serializer)),
})
"""


class ArqImplementation(Implementation):
    name = "arq"
    title = "arq"
    Options = ArqOptions
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "running jobs cancelled at once (job_completion_wait 0, arq's default; arq/worker.py handle_sig) and, "
        "with retry_jobs, run again by the next worker within max_tries"
    )
    packages = ("arq>=0.26",)
    queue_package = "arq"
    own_deliveries = (
        Delivery(
            "default",
            f"at least once (max_tries 5, arq's default): a dead worker's job runs again; {MECHANISM}",
            worker_crash="redelivered",
        ),
        Delivery(
            "max_tries=1",
            f"at most once: a dead worker's job is not run again but failed as 'max 1 retries exceeded'; {MECHANISM}",
            worker_crash="lost",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def __init__(self) -> None:
        self._app: ArqOptions | None = None  # the user's settings this instance measures (`read_app`)

    @property
    def deliveries(self) -> tuple[Delivery, ...]:  # type: ignore[override]
        if self._app is None:
            return self.own_deliveries
        tries = (self._app.app_settings or {}).get("max_tries", "5")
        outcome: Outcome = "lost" if tries == "1" else "redelivered"
        how = "at most once" if outcome == "lost" else "at least once"
        return (Delivery("app", f"your settings: max_tries={tries}: {how}; {MECHANISM}", worker_crash=outcome),)

    def read_app(
        self, options: PluginOptions, python: str, environ: Mapping[str, str], external: bool
    ) -> PluginOptions:
        """`--app`: the user's WorkerSettings read in a child of arq's environment (`user_app.read`); one that
        pickles on a server taskbench does not own is refused (whoever writes there would run code in its worker)."""
        opts = ArqOptions.model_validate(options)
        assert opts.app is not None, "read_app reads the settings --app names"
        flag = f"--app {self.name}={opts.app}"
        read = opts.model_copy(update={"app_settings": user_app.read(python, APP_PROBE, opts.app, environ, flag)})
        if external and (read.app_settings or {}).get("serializer") == "pickle":
            raise UsageError(
                f"{flag}: your worker unpickles its jobs, and on a server taskbench does not own whoever can write "
                "there could run code in it: measure it on taskbench's private Redis (drop --redis-url)"
            )
        self._app = read
        return read.model_dump(exclude_defaults=True)

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # max_jobs comes from TASKBENCH_CONCURRENCY (WorkerSettings): arq's CLI has no flag for it.
        settings = "USER_WORKER_SETTINGS" if ArqOptions.model_validate(options).app else "WorkerSettings"
        return python_module("arq", f"taskbench_service.implementations.arq.{settings}")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # asyncio.to_thread on a pool of max_jobs threads
        return event_loop_model(workload, cpu_count, workers, threads, "max_jobs", "via asyncio.to_thread")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"arq:*:{namespace}:*",)

    def external_settings(self) -> dict[str, str]:
        return {"serializer": JSON_ON_EXTERNAL}

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        opts = ArqOptions.model_validate(options)
        if opts.app is not None:
            return app_settings_shown(opts, concurrency)
        return {
            "worker": "one process, asyncio event loop (arq's only model; scale by running more workers)",
            "max_jobs": f"{concurrency} (--concurrency; arq default 10)",
            "sync jobs": f"asyncio.to_thread on the loop's default executor, set to {concurrency} threads "
            "(Python's default: min(32, cores + 4))",
            "poll_delay": "0.1 s (arq default 0.5 s: up to 0.5 s before a queued job starts, and a poll starts "
            "at most max_jobs jobs)",
            "queue_read_limit": "arq default, max(5 × max_jobs, 100) job ids per poll",
            "job_timeout": "max_jobs × the redelivery timeout max(5 s, 2 × duration + 2 s) (arq default 300 s): arq "
            "cancels a job at this timeout, and cpu / blocking_async jobs share one GIL / loop, up to max_jobs × "
            "duration each",
            "in-progress key TTL": "job_timeout + 10 s, fixed by arq: when a dead worker's job can be taken again "
            "(not configurable on its own)",
            "abandoned-job sweep": "none in arq: every poll re-reads the queue (restore interval not used)",
            "max_tries": "per delivery variant (default: 5, arq's default)",
            "retry_jobs": "on (arq's default): a job cancelled by the worker's shutdown is run again, within "
            "max_tries; a job's exception never is",
            "keep_result": "0 s: no result stored (arq default 3600 s)",
            "serializer": "pickle (arq's default)",
            "worker's Redis client": "reconnects and retries (5 tries, backoff 0.2 → 1 s): arq's poll loop exits on "
            "the first Redis error otherwise",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """job_timeout (max_jobs × timeout) + arq's fixed 10 s on the in-progress key, then one poll."""
        return concurrency * timeout_s + 10.0 + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once on the worker's event loop"
        return "sync def via asyncio.to_thread in the worker's thread pool"


IMPLEMENTATION = ArqImplementation()


def app_settings_shown(opts: ArqOptions, concurrency: int) -> dict[str, str]:
    """What every report prints of `arq+app`: the user's settings, as they wrote them."""
    s = opts.app_settings or {}
    return {
        "app": f"{opts.app}: your arq WorkerSettings (read before the run); taskbench sets only its connections "
        "(its Redis), its queue's name in the run's namespace and max_jobs",
        "queue_name": f"{s.get('queue_name')} (in the run's namespace: `<namespace>:{s.get('queue_name')}`)",
        "functions": f"yours ({s.get('functions')}) and taskbench's job",
        "max_jobs": f"{concurrency}: taskbench's --concurrency (yours: {s.get('max_jobs')})",
        "job_timeout": f"{s.get('job_timeout')} s: arq cancels a job at this timeout; a dead worker's job is taken "
        "again 10 s after it (the in-progress key)",
        "keep_result": f"{s.get('keep_result')} s",
        "max_tries": s.get("max_tries", "?"),
        "retry_jobs": s.get("retry_jobs", "?"),
        "poll_delay": f"{s.get('poll_delay')} s",
        "job_completion_wait": f"{s.get('job_completion_wait')} s: how long SIGTERM waits before it cancels jobs",
        "serializer": s.get("serializer", "?"),
    }
