from __future__ import annotations

import pytest
import torch

from napari_madgnet.model import MADGNet, load_model

from .official import official_state


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds on 2 CPU cores")


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    # One intra-op thread: on a shared 2-core machine, two OpenMP threads per process get
    # descheduled while spinning at barriers and run tens of times slower than one.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def official_models() -> dict[str, MADGNet]:
    """Reference-weight models, built once per backbone on demand (cache)."""
    return {}


@pytest.fixture
def official_model(official_models):
    def get(backbone: str = "resnest50") -> MADGNet:
        if backbone not in official_models:
            official_models[backbone] = load_model(official_state(backbone))
        model = official_models[backbone]
        model.eval()
        return model

    return get
