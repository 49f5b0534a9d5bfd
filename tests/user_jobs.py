"""The user's own job functions the tests run (`--job MODULE:NAME`): written to a folder outside the project,
which the shared stack (tests/conftest.py) and the command-line tests import them from."""

MODULE = "tb_user_jobs_for_tests"
SOURCE = """
import asyncio, json, os, time

def record(n, out):
    time.sleep(0.05)
    with open(out, "a") as f:
        f.write(json.dumps({"n": n, "pid": os.getpid()}) + "\\n")
    return n

async def record_async(n, out):
    await asyncio.sleep(0.05)
    with open(out, "a") as f:
        f.write(json.dumps({"n": n, "pid": os.getpid()}) + "\\n")
    return n

def odd_fails(n, out=""):
    if n % 2:
        raise ValueError(f"order {n} is odd")

def hangs_after_first(n, out=""):
    if n:
        time.sleep(3600)

def not_json_args(i):
    return {"n": i, "when": object()}

def hangs(n=0, out=""):
    time.sleep(3600)

def exits(n=0, out=""):
    raise SystemExit(3)

def exits_at_once(n=0, out=""):
    os._exit(5)

def kills_itself(n=0, out=""):
    os.kill(os.getpid(), 9)

def exits_on_3(n=0):
    time.sleep(0.2)
    if n == 3:
        os._exit(1)

def numbered(i):
    return {"n": i}
"""
JOBS = ("record", "record_async", "odd_fails", "hangs_after_first")
