"""Device choice and the shared cancellation token."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_madgnet.device import autocast, available_devices, resolve_device
from napari_madgnet.jobs import Cancelled, CancelToken, check_cancelled


def test_auto_picks_a_real_device() -> None:
    device = resolve_device("auto")
    assert device.type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        assert device.type in {"mps", "cpu"}
    assert available_devices()[0] == "auto" and available_devices()[-1] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        resolve_device("tpu-9000")


def test_autocast_is_a_no_op_on_cpu() -> None:
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.gpu
def test_autocast_lowers_precision_on_cuda() -> None:
    with autocast(torch.device("cuda")):
        y = torch.ones(8, 8, device="cuda") @ torch.ones(8, 8, device="cuda")
    assert y.dtype in (torch.bfloat16, torch.float16)


def test_cancel_token_from_another_thread() -> None:
    token = CancelToken()
    check_cancelled(token)
    check_cancelled(None)
    thread = threading.Thread(target=token.cancel)
    thread.start()
    thread.join()
    assert token.cancelled
    with pytest.raises(Cancelled):
        check_cancelled(token)


def test_run_to_end_reports_every_event_and_returns_the_result() -> None:
    from napari_madgnet.jobs import Progress, run_to_end

    def job():
        for i in range(3):
            yield Progress(i / 3, f"step {i}")
        return "done"

    seen: list[str] = []
    assert run_to_end(job(), lambda p: seen.append(p.message)) == "done"
    assert seen == ["step 0", "step 1", "step 2"]
    assert run_to_end(job()) == "done"
