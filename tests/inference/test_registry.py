"""The models folder: import the release layout, list fast, resolve names, refuse non-checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from napari_madgnet import registry
from napari_madgnet.registry import (
    RegistryError,
    import_official,
    list_models,
    load_registered_model,
    register_model,
    resolve_model,
)


def make_release(root: Path, released: Path, datasets=tuple(registry.OFFICIAL_MODELS)) -> Path:
    """The authors' folder layout, with links to one released-format file (no 5 x 250 MB copies)."""
    for ds in datasets:
        folder = root / "model_weights" / ds / "model_weights"
        folder.mkdir(parents=True)
        os.symlink(released, folder / "model_weight(EPOCH 200).pth.tar")
        (folder / "model_weight(EPOCH 100).pth.tar").write_bytes(b"older, ignored")
    return root


def test_import_official_links_and_lists(tmp_path, released_checkpoint, models_home):
    release = make_release(tmp_path / "MADGNet", released_checkpoint)
    before = {p: p.stat().st_mtime_ns for p in release.rglob("*")}
    entries = import_official(release)
    assert [e.name for e in entries] == [
        "madgnet-polyp",
        "madgnet-nuclei-dsb2018",
        "madgnet-skin-isic2018",
        "madgnet-covid19-ct",
        "madgnet-breast-us-busi",
    ]
    assert {p: p.stat().st_mtime_ns for p in release.rglob("*")} == before  # release untouched
    listed = {e.name: e for e in list_models()}
    nuclei = listed["madgnet-nuclei-dsb2018"]
    assert nuclei.modality == "nuclei microscopy" and "DSB2018" in nuclei.trained_on
    assert nuclei.encoder == "resnest50" and nuclei.num_classes == 1 and nuclei.available
    assert nuclei.preprocessing == {"normalization": "scale255", "input_size": 352, "channels": 3}
    assert nuclei.path.name == "model_weight(EPOCH 200).pth.tar"
    assert listed["madgnet-breast-us-busi"].modality == "breast ultrasound"
    with pytest.raises(FileExistsError, match="already registered"):
        import_official(release)
    assert len(import_official(release, overwrite=True)) == 5


def test_resolve_and_load_by_name(tmp_path, released_checkpoint, models_home):
    import_official(make_release(tmp_path / "rel", released_checkpoint, ("DSB2018",)))
    entry = resolve_model("MADGNET-NUCLEI-DSB2018")  # names are case-insensitive
    model = load_registered_model(entry.name)
    assert model.model_name == "madgnet-nuclei-dsb2018"
    assert model.checkpoint_info["preprocessing"]["input_size"] == 352
    assert model.checkpoint_info["provenance"]["modality"] == "nuclei microscopy"
    assert Path(model.checkpoint_path).name == "model_weight(EPOCH 200).pth.tar"
    assert load_registered_model(entry.name) is not model  # no model cache in the registry: callers keep
    with pytest.raises(RegistryError, match=r"Unknown model 'nope'.*madgnet-nuclei-dsb2018.*import-official"):
        resolve_model("nope")


def test_import_official_convert_writes_project_checkpoints(tmp_path, released_checkpoint, models_home):
    (entry,) = import_official(make_release(tmp_path / "rel", released_checkpoint, ("BUSI",)), convert=True)
    assert entry.kind == "checkpoint" and entry.path == models_home / "madgnet-breast-us-busi.pth"
    assert entry.modality == "breast ultrasound" and entry.source == "official MADGNet release (converted)"
    from napari_madgnet.model import read_checkpoint_info

    info = read_checkpoint_info(entry.path)
    assert info["provenance"]["original_sha256"] and info["preprocessing"]["normalization"] == "scale255"


def test_listing_reads_metadata_once(checkpoint, models_home, monkeypatch):
    register_model(checkpoint, "tiny", copy=True)
    assert [e.name for e in list_models()] == ["tiny"]
    registry._memory_cache.clear()  # a new process: only the on-disk cache is left

    def boom(path):
        raise AssertionError("metadata re-read although the file did not change")

    import napari_madgnet.model as model_pkg

    monkeypatch.setattr(model_pkg, "read_checkpoint_info", boom)
    (entry,) = list_models()
    assert entry.encoder == "resnest50" and entry.modality == "test"


def test_register_refuses_a_file_that_is_not_a_checkpoint(tmp_path, models_home):
    bad = tmp_path / "notes.pth"
    bad.write_text("these are not weights")
    with pytest.raises(RegistryError, match="not a MADGNet checkpoint"):
        register_model(bad, "bad")
    assert list_models() == []
    with pytest.raises(RegistryError, match="not allowed"):
        register_model(bad, "../evil")


def test_broken_entries_are_listed_with_their_problem(tmp_path, models_home):
    models_home.mkdir(parents=True)
    (models_home / "gone.json").write_text(
        json.dumps({"name": "gone", "path": str(tmp_path / "missing.pth")})
    )
    (models_home / "junk.pth").write_bytes(b"\x00" * 10)
    entries = {e.name: e for e in list_models()}
    assert not entries["gone"].available and "missing" in entries["gone"].problem
    assert not entries["junk"].available and "not a PyTorch checkpoint" in entries["junk"].problem
    with pytest.raises(RegistryError, match="unusable"):
        resolve_model("gone")


def test_no_release_found_is_a_clear_error(tmp_path, models_home):
    with pytest.raises(RegistryError, match=r"No released checkpoints.*model_weight"):
        import_official(tmp_path)


def test_one_resolver_serves_linked_models_to_training_and_evaluation(tmp_path, checkpoint, models_home):
    """A model registered as a link (`madgnet models add base.pt --name mybase`) resolves the same
    way for predict, finetune and evaluate: the fault was "Model mybase not found" in finetune."""
    from napari_madgnet.training import TrainConfig
    from napari_madgnet.training.modelio import check_start_model

    register_model(checkpoint, "mybase")  # an index card: the file stays where it is
    assert (models_home / "mybase.json").is_file() and not (models_home / "mybase.pth").exists()
    info = check_start_model(TrainConfig.finetune(from_model="MyBase"))
    assert info is not None and Path(info["path"]) == checkpoint.resolve()
    with pytest.raises(RegistryError, match=r"Unknown model 'mybasee'.*registered: mybase"):
        check_start_model(TrainConfig.finetune(from_model="mybasee"))


def test_resolving_a_path_writes_nothing_beside_it(tmp_path, checkpoint, models_home):
    """The release folder (or any folder of the user's) is never written to by listing or loading."""
    folder = tmp_path / "release"
    folder.mkdir()
    target = folder / "model.pth"
    target.write_bytes(checkpoint.read_bytes())
    before = sorted(p.name for p in folder.iterdir())
    load_registered_model(target)
    resolve_model(str(target))
    assert sorted(p.name for p in folder.iterdir()) == before
