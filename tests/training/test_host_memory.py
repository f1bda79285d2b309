"""While CPU training runs, freed activations stay mapped; afterwards the memory goes back."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager

import pytest

from napari_madgnet.jobs import Cancelled, CancelToken
from napari_madgnet.training import data_from_arrays, host_memory, iter_train, train
from napari_madgnet.training import engine as engine_mod

from .conftest import blobs

# Run in a fresh process: the page-fault count depends on the heap's history, which in a long
# test session is anything. 64 MiB blocks: above glibc's largest default mmap threshold.
_PROBE = """
import json, resource, torch
from napari_madgnet.training import host_memory

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20

def faults_touching_a_new_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(16 << 20)
    block.fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del block
    return faults

plain = [faults_touching_a_new_block() for _ in range(3)]
base = rss_mb()
with host_memory.keep_freed_memory() as active:
    # torch's aligned allocations settle on the second free
    kept_faults = [faults_touching_a_new_block() for _ in range(4)]
    kept = rss_mb()
after = rss_mb()
print(json.dumps(dict(active=active, plain=plain, kept_faults=kept_faults, base=base, kept=kept,
                      after=after)))
"""
PAGES = (16 << 20) * 4 // 4096


@pytest.mark.skipif(not host_memory.supported(), reason="allocator tuning needs Linux with glibc")
def test_freed_blocks_are_reused_inside_and_returned_after() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["active"]
    assert min(r["plain"][1:]) > PAGES // 2, "without it, each 64 MiB block is mapped afresh"
    assert max(r["kept_faults"][2:]) < PAGES // 20, f"re-allocation still faults: {r['kept_faults']}"
    assert r["kept"] - r["base"] > 48, "the freed block should have stayed in the process"
    assert r["kept"] - r["after"] > 48, "leaving the block should give the memory back (malloc_trim)"


def test_disabled_or_unsupported_does_nothing() -> None:
    with host_memory.keep_freed_memory(enabled=False) as active:
        assert not active


def test_engine_keeps_memory_only_while_training(tmp_path, tiny_cfg, monkeypatch) -> None:
    calls: list[str] = []

    @contextmanager
    def recording(enabled: bool = True):
        calls.append(f"enter {enabled}")
        try:
            yield enabled
        finally:
            calls.append("exit")

    monkeypatch.setattr(engine_mod, "keep_freed_memory", recording)
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    train(tiny_cfg, data)
    assert calls == ["enter True", "exit"]

    calls.clear()
    token = CancelToken()
    token.cancel()  # before the first step: nothing to keep, the job is cancelled outright
    with pytest.raises(Cancelled):
        for _ in iter_train(tiny_cfg, data, out_dir=tmp_path, cancel=token):
            pass
    assert calls == ["enter True", "exit"]
