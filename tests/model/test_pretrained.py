"""ImageNet weight download: local HTTP server, hash check, offline message, key mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_madgnet.model import MADGNet, pretrained
from napari_madgnet.model.encoders import build_encoder
from napari_madgnet.model.pretrained import (
    PretrainedWeightsError,
    WeightFile,
    fetch_file,
    fetch_imagenet_weights,
    imagenet_state_for_encoder,
    weights_dir,
)


def test_download_succeeds_and_is_cached(server, publish, tmp_path: Path) -> None:
    base, root = server
    name = publish(root, "tiny", b"weights" * 1000)
    cache = tmp_path / "cache"
    path = fetch_file(name, base, folder=cache)
    assert path == cache / name and path.read_bytes() == b"weights" * 1000
    # no temporary left behind; the full digest of the first good download is recorded
    assert sorted(p.name for p in cache.iterdir()) == sorted([name, "sha256-record.json"])
    (root / name).unlink()  # served no more: the cached copy is used
    assert fetch_file(name, base, folder=cache) == path


def test_a_later_copy_must_match_the_recorded_full_digest(server, publish, tmp_path: Path) -> None:
    """The authors publish an 8-digit prefix only: after the first download, the full sha256 counts."""
    import hashlib

    base, root = server
    name = publish(root, "tiny", b"original")
    cache = tmp_path / "cache"
    fetch_file(name, base, folder=cache)
    prefix = name.rsplit("-", 1)[1].split(".")[0]
    forged = next(
        payload
        for i in range(1_000_000)
        if hashlib.sha256(payload := f"forged {i}".encode()).hexdigest().startswith(prefix[:4])
    )
    # a file that would pass a short prefix check, swapped in for the cached copy
    (cache / name).write_bytes(forged)
    monkey_prefix = pytest.MonkeyPatch()
    monkey_prefix.setattr(pretrained, "expected_hash_prefix", lambda filename: prefix[:4])
    try:
        with pytest.raises(PretrainedWeightsError, match="instead of the known"):
            fetch_file(name, base, folder=cache)
    finally:
        monkey_prefix.undo()


def test_plain_http_needs_an_explicit_opt_in(server, publish, tmp_path: Path, monkeypatch) -> None:
    base, root = server
    name = publish(root, "tiny", b"weights")
    monkeypatch.delenv("MADGNET_ALLOW_INSECURE_MIRROR")
    with pytest.raises(PretrainedWeightsError, match="only https://"):
        fetch_file(name, base, folder=tmp_path / "cache")
    with pytest.raises(PretrainedWeightsError, match="only https://"):
        fetch_file(name, "file:///etc/", folder=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_bad_hash_is_refused_and_nothing_is_kept(server, publish, tmp_path: Path) -> None:
    base, root = server
    name = publish(root, "tiny", b"tampered", good=False)
    cache = tmp_path / "cache"
    with pytest.raises(PretrainedWeightsError, match="does not start with deadbeef"):
        fetch_file(name, base, folder=cache)
    assert list(cache.iterdir()) == []


def test_corrupt_cached_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tiny-0123abcd.pth").write_bytes(b"x")
    with pytest.raises(PretrainedWeightsError, match="corrupt"):
        fetch_file("tiny-0123abcd.pth", "http://127.0.0.1:9/", folder=tmp_path)


def test_offline_message_names_file_and_folder(server, publish, tmp_path: Path, monkeypatch) -> None:
    base, root = server
    name = publish(root, "resnet50", b"abc")
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "resnet50", WeightFile(name, base))
    monkeypatch.setenv("MADGNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", "http://127.0.0.1:9/nothing-listens-here/")
    folder = tmp_path / "cache" / "weights"
    with pytest.raises(PretrainedWeightsError) as info:
        fetch_imagenet_weights("resnet50")
    message = str(info.value)
    assert name in message and str(folder) in message
    assert list(folder.iterdir()) == []
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", base)  # the env var redirects the download
    assert fetch_imagenet_weights("resnet50") == folder / name


def test_weights_dir_follows_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MADGNET_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_dir() == tmp_path / "xdg" / "napari-madgnet" / "weights"
    monkeypatch.setenv("MADGNET_CACHE_DIR", str(tmp_path / "own"))
    assert weights_dir() == tmp_path / "own" / "weights"


def test_released_urls_and_names() -> None:
    files = pretrained.IMAGENET_WEIGHTS
    assert files["resnest50"].filename == "resnest50-528c19ca.pth"
    assert files["res2net50_v1b_26w_4s"].filename == "res2net50_v1b_26w_4s-3cf99910.pth"
    assert files["resnet50"].filename == "resnet50-0676ba61.pth"
    assert all(f.base_url.startswith("https://") for f in files.values())


def test_imagenet_keys_map_onto_the_encoder(tmp_path: Path, monkeypatch) -> None:
    """A classifier file (fc head, no num_batches_tracked) loads into MADGNet's encoder."""
    torch.manual_seed(0)
    source = build_encoder("resnet50")
    state = {
        k: torch.randn_like(v.float())
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet50-00000000.pth"
    torch.save(state, path)
    monkeypatch.setattr(pretrained, "fetch_imagenet_weights", lambda backbone: path)
    model = MADGNet("resnet50", pretrained_backbone=True)
    loaded = model.feature_encoding.state_dict()
    assert torch.equal(loaded["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    assert set(imagenet_state_for_encoder(state, source)) == set(source.state_dict())
