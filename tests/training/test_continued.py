"""Continue fine-tuning the current model on corrected regions, keeping the optimiser state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_madgnet.training import DataError, Region, continue_config, continue_finetune, finetune
from napari_madgnet.training import checkpoint as ckpt
from napari_madgnet.training.continued import matching_optimizer_state, region_items

from .conftest import blobs


def _adam_steps(run_dir) -> int:
    state = ckpt.load_state(run_dir / ckpt.LAST_STATE)["optimizer"]["state"]
    return int(next(iter(state.values()))["step"])


@pytest.mark.slow
def test_continuing_restores_the_optimiser_state_and_leaves_the_model_alone(tmp_path, tiny_cfg) -> None:
    image, labels = blobs((96, 96), seed=1)
    # validation off: the run keeps its last model, whose state is in last_state.pt (saved once)
    cfg = tiny_cfg.replace(val_fraction=0.0, checkpoint_every=2)
    first = finetune(image, labels, config=cfg, out=tmp_path / "m0.pt", register=False, keep_run="resume")
    assert _adam_steps(first.out_dir) == 2
    before = {k: v.clone() for k, v in first.model.state_dict().items()}

    regions = [Region((), (0, 0, 64, 96)), Region((), (32, 32, 96, 96))]
    config = continue_config(first.model, steps=2, batch_size=2, checkpoint_every=2)
    assert config.val_fraction == 0.0 and config.lr == pytest.approx(cfg.lr / 4)
    second = continue_finetune(
        first.model,
        image,
        labels,
        regions=regions,
        config=config,
        previous_run=first.out_dir,
        out=tmp_path / "m1.pt",
        register=False,
    )
    assert second.continued["optimizer_state"] == "restored"
    assert _adam_steps(second.out_dir) == 2 + 2  # Adam's step count went on from the first run
    assert all(torch.equal(v, first.model.state_dict()[k]) for k, v in before.items())  # not touched
    assert not all(torch.equal(v, second.model.state_dict()[k]) for k, v in before.items())
    assert second.model_path.is_file()
    # the first run's state does not belong to the second model
    state, why = matching_optimizer_state(second.model, first.out_dir)
    assert state is None and "other weights" in why


def test_the_optimiser_state_is_used_only_for_the_weights_it_belongs_to(tmp_path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    optim = torch.optim.Adam(net.parameters())
    net(torch.rand(4, 3)).sum().backward()
    optim.step()
    ckpt.save_state(
        tmp_path / ckpt.LAST_STATE, {"model": net.state_dict(), "optimizer": optim.state_dict(), "step": 1}
    )
    state, why = matching_optimizer_state(net, tmp_path)
    assert state is not None and "restored" in why and state["state"][0]["step"] == 1
    other = torch.nn.Linear(3, 2)
    assert matching_optimizer_state(other, tmp_path / ckpt.LAST_STATE)[0] is None
    assert "does not exist" in matching_optimizer_state(net, tmp_path / "nowhere")[1]
    assert matching_optimizer_state(net, None) == (None, "no earlier run given: the optimiser starts fresh")


def test_region_items_cut_the_normalised_image_and_check_the_regions(tiny_cfg) -> None:
    image, labels = blobs((80, 90), seed=2)
    stack, stack_labels = np.stack([image, image // 2]), np.stack([labels, np.zeros_like(labels)])
    items, k = region_items(
        stack, stack_labels, [Region((1,), (0, 0, 64, 64)), Region((0,), None)], tiny_cfg, axes="ZYX"
    )
    assert k == 1 and [it.shape for it in items] == [(64, 64), (80, 90)]
    assert items[0].target.sum() == 0  # a background-only correction is still training data
    assert items[0].image.min() >= 0.0 and items[1].image.max() <= 1.0
    with pytest.raises(DataError, match="outside"):
        region_items(stack, stack_labels, [Region((2,), (0, 0, 64, 64))], tiny_cfg, axes="ZYX")
    with pytest.raises(DataError, match="patch size"):
        region_items(stack, stack_labels, [Region((0,), (0, 0, 32, 90))], tiny_cfg, axes="ZYX")


def test_continue_config_follows_the_models_recipe(tiny_cfg) -> None:
    from types import SimpleNamespace

    trained = SimpleNamespace(checkpoint_info={"provenance": {"recipe": tiny_cfg.replace(lr=2e-3).to_dict()}})
    cfg = continue_config(trained, steps=30)
    assert cfg.lr == pytest.approx(5e-4) and cfg.patch_size == tiny_cfg.patch_size
    assert cfg.max_steps == 30 and cfg.checkpoint_every == 30 and cfg.warmup_steps == 0
    assert cfg.val_fraction == 0.0 and cfg.from_model is None
    released = continue_config(SimpleNamespace(checkpoint_info=None), steps=30, lr=1e-4)
    assert released.lr == 1e-4  # overrides win
    assert continue_config(SimpleNamespace(checkpoint_info=None)).lr == pytest.approx(5e-5)


def test_an_inference_copy_or_another_network_is_refused_before_any_work(tmp_path) -> None:
    from types import SimpleNamespace

    from napari_madgnet.errors import UserError

    image, labels = blobs((64, 64))
    folded = SimpleNamespace(forward_stages=None, bn_folded=True, checkpoint_info=None)
    with pytest.raises(UserError, match="inference copy"):
        continue_finetune(folded, image, labels, out=tmp_path / "m.pt", register=False)
    with pytest.raises(UserError, match="not a MADGNet"):
        continue_finetune(torch.nn.Linear(2, 2), image, labels, out=tmp_path / "m.pt", register=False)
    assert not (tmp_path / "m.pt").exists()
