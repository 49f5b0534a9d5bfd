"""RQ's settings module for the taskbench worker: `python -m rq.cli worker-pool -c taskbench_service.rq_worker ...`.

RQ's CLI takes its Redis URL and queues from a settings module (`-c`, its documented way; there is no
option for the URL but `--url`, which the harness's command line cannot know). `worker-pool` imports it in
its main process before it forks its workers: the one start-up hook RQ runs there, so the CPU workload is
calibrated here, once, on an idle process, and every worker and work horse inherits the figure (also the
workers the pool starts again after a crash, while others may be busy). Only RQ's CLI imports this module.
"""

from __future__ import annotations

from taskbench_service import workloads
from taskbench_service.implementations.rq import QUEUE
from taskbench_service.settings import settings

REDIS_URL = settings.redis_url
QUEUES = [QUEUE]

workloads.calibrate()
