"""Lock files: one holder at a time, across processes; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from napari_madgnet.locks import FileLock, LockedError, lock_holder

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from napari_madgnet.locks import FileLock
lock = FileLock(sys.argv[1], "The thing", "holder process")
lock.acquire()
print("held", flush=True)
sys.stdin.readline()  # hold until the test says so
lock.release()
"""


def test_one_holder_at_a_time_in_one_process(tmp_path) -> None:
    path = tmp_path / ".x.lock"
    first = FileLock(path, "The model name 'x'", "fine-tuning 'x'")
    assert first.acquire() is None
    owner = json.loads(path.read_text())
    assert owner["pid"] == os.getpid() and owner["what"] == "fine-tuning 'x'"
    with pytest.raises(LockedError, match=r"The model name 'x' is in use by fine-tuning 'x' \(PID \d+"):
        FileLock(path, "The model name 'x'", "another run").acquire()
    assert lock_holder(path)["what"] == "fine-tuning 'x'"
    first.release()
    assert not path.exists() and lock_holder(path) is None
    with FileLock(path, "The model name 'x'", "the second run"):
        assert json.loads(path.read_text())["what"] == "the second run"
    assert not path.exists()


def test_a_lock_held_by_another_live_process_is_refused(tmp_path) -> None:
    path = tmp_path / ".x.lock"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as exc:
            FileLock(path, "The thing", "me").acquire()
        assert f"PID {proc.pid}" in str(exc.value) and "holder process" in str(exc.value)
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=60)
    assert not path.exists()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path) -> None:
    path = tmp_path / ".x.lock"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path.write_text(json.dumps({"what": "a killed run", "pid": gone.pid, "host": socket.gethostname()}))
    lock = FileLock(path, "The thing", "me")
    note = lock.acquire()
    assert note is not None and "a killed run" in note and f"PID {gone.pid}" in note
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    # a lock written on another machine is not taken over: its PID means nothing here
    path.write_text(json.dumps({"what": "a run elsewhere", "pid": gone.pid, "host": "other-host.example"}))
    with pytest.raises(LockedError, match=f"delete {path}"):
        FileLock(path, "The thing", "me").acquire()
