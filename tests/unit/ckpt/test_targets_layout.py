"""A checkpoint written on the filesystem, on Lustre, is laid out for its size first."""

from __future__ import annotations

import pytest
import torch

from aif_gateway import ckpt

from ..fsio.test_layout import LUSTRE_WIDE_DEFAULT, FakeLfs, pretend

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@pytest.fixture
def fake_lfs(tmp_path, monkeypatch) -> FakeLfs:
    return FakeLfs(tmp_path, monkeypatch)


def test_every_file_is_laid_out_for_its_size(tmp_path, fake_lfs, monkeypatch):
    # A directory striped over every OST by default: files under 1 GiB are narrowed to one stripe,
    # but only when their size is known; a file of unknown size would get the PFL layout (-E ...).
    pretend(monkeypatch, LUSTRE_WIDE_DEFAULT)
    (tmp_path / "root/bkt").mkdir(parents=True)
    state = {"big": torch.randn(5_000_000), "step": 1}
    ckpt.save(state, "s3://bkt/ck", root=tmp_path / "root", files_per_rank=1)
    calls = fake_lfs.calls()
    assert len(calls) == 3  # the data file, the manifest, .metadata
    assert all(call[:-1] == ["setstripe", "-c", "1", "-S", "1M"] for call in calls), calls
    out = {"big": torch.zeros(5_000_000), "step": 0}
    ckpt.load(out, "s3://bkt/ck", root=tmp_path / "root", verify=True)
    assert torch.equal(out["big"], state["big"]) and out["step"] == 1
