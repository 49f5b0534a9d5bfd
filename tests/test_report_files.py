"""What `report` writes and reads: a crafted run cannot write outside its folder, and a full disk leaves every earlier
report whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskbench.report import files

FIXTURE = Path(__file__).parent / "fixtures" / "small_run"


def _taskbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskbench", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("field", ["timestamp", "scenario_files"])
@pytest.mark.pure
def test_a_crafted_run_cannot_name_a_file_outside_its_folder(tmp_path: Path, field: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    comparison = next(run.glob("comparison_*.json"))
    data = json.loads(comparison.read_text())
    if field == "timestamp":
        data["timestamp"] = "../../escaped"
    else:
        data["scenario_files"] = ["../../../etc/passwd"]
    comparison.write_text(json.dumps(data))
    done = _taskbench("report", str(run))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "not a plain file name" in done.stderr
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("comparison_*"))


def test_a_full_disk_keeps_every_earlier_report_whole(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: a small tmpfs is needed for this test")
        pytest.skip("needs root to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(disk)], check=True)
    try:
        run = disk / "run"
        shutil.copytree(FIXTURE, run)
        files.rerender(run)  # the reports, once, with room to spare
        before = {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
        filler = disk / "filler"
        with filler.open("wb", buffering=0) as out:  # every byte left taken (unbuffered: closing writes nothing)
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        done = _taskbench("report", str(run))
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "every file written before is kept whole" in done.stderr
        after = {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
        assert after == before  # nothing half-written, no temporary file left
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.pure
def test_a_service_log_is_capped_keeping_its_newest_half(tmp_path: Path) -> None:
    from taskbench.stack.processes import ManagedProcess

    log = tmp_path / "chatty.log"
    log.write_bytes(b"".join(b"line %04d\n" % i for i in range(1000)))  # 10 000 bytes
    process = ManagedProcess("chatty", ["true"], {}, log)
    process.cap_log(max_bytes=2000)
    text = log.read_text()
    assert len(text) < 1100 and text.startswith("[taskbench: 9000 earlier bytes of this log cut]")
    assert text.endswith("line 0999\n")
    process.cap_log(max_bytes=2000)
    assert log.read_text() == text  # under the cap: untouched
