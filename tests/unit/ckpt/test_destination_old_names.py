"""Names from before ckpt's targets were named so (door, DoorOptions, open_door) keep working, and warn."""

from __future__ import annotations

import argparse

import pytest

from aif_gateway import ckpt
from aif_gateway.ckpt.cli import add_ckpt_parser
from aif_gateway.ckpt.destination import TargetOptions
from aif_gateway.ckpt.targets import DirectoryTarget


def test_door_keyword_is_via():
    with pytest.deprecated_call():
        assert TargetOptions.from_keywords(door="s3", threads=3) == TargetOptions(via="s3", threads=3)
    with pytest.deprecated_call(), pytest.raises(TypeError, match="via= only"):
        TargetOptions.from_keywords(door="s3", via="s3")


def test_old_exports_are_the_new_ones(tmp_path):
    with pytest.deprecated_call():
        options = ckpt.DoorOptions(door="filesystem")
    assert options == ckpt.TargetOptions(via="filesystem")
    with pytest.deprecated_call():
        open_door = ckpt.open_door
    target = open_door(tmp_path, options)
    assert isinstance(target, DirectoryTarget)
    target.close()
    assert "DoorOptions" not in ckpt.__all__ and "open_door" not in ckpt.__all__


def test_save_stats_door_is_via():
    with pytest.deprecated_call():
        assert ckpt.SaveStats(via="s3").door == "s3"


def test_cli_door_flag_is_via():
    parser = argparse.ArgumentParser()
    add_ckpt_parser(parser.add_subparsers())
    assert parser.parse_args(["ckpt", "info", "x", "--door", "s3"]).via == "s3"
    assert parser.parse_args(["ckpt", "info", "x"]).via == "auto"
