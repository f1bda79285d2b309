"""While CPU training runs, freed activations stay mapped; afterwards the memory goes back."""

from __future__ import annotations

import resource
from contextlib import contextmanager

import pytest
import torch

from napari_madgnet.jobs import Cancelled, CancelToken
from napari_madgnet.training import data_from_arrays, host_memory, iter_train, train
from napari_madgnet.training import engine as engine_mod

from .conftest import blobs

BLOCK = 16 << 20  # float32 elements: a 64 MiB block, above glibc's largest default mmap threshold
PAGES = BLOCK * 4 // 4096


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _faults_touching_a_new_block() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(BLOCK)
    block.fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del block
    return faults


@pytest.mark.skipif(not host_memory.supported(), reason="allocator tuning needs Linux with glibc")
def test_freed_blocks_are_reused_inside_and_returned_after() -> None:
    base = _rss_mb()
    with host_memory.keep_freed_memory() as active:
        assert active
        for _ in range(2):  # maps the pages; torch's aligned allocations settle on the 2nd free
            _faults_touching_a_new_block()
        kept = _rss_mb()
        again = _faults_touching_a_new_block()
    after = _rss_mb()
    assert again < PAGES // 20, f"{again} page faults re-allocating a freed 64 MiB block (of {PAGES} pages)"
    assert kept - base > 48, "the freed block should have stayed in the process"
    assert kept - after > 48, "leaving the block should give the memory back (malloc_trim)"


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
    with pytest.raises(Cancelled):
        for _ in iter_train(tiny_cfg, data, out_dir=tmp_path, cancel=token):
            assert calls == ["enter True"]
            token.cancel()
    assert calls == ["enter True", "exit"]
