"""Sizes as the stage CLI reads them, and the option checks."""

from __future__ import annotations

import pytest

from aif_gateway.stage.options import S3_GET_ENV, GiB, MiB, StageOptions, fast_s3_reads, format_size, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("64M", 64 * MiB),
        ("1G", GiB),
        ("500G", 500 * GiB),
        ("1024", 1024),
        ("8MiB", 8 * MiB),
        ("2gb", 2 * GiB),
        ("1.5G", GiB + GiB // 2),
        (" 3 K ", 3 * 1024),
        ("1T", 1 << 40),
    ],
)
def test_parse_size_uses_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1G", "12Q", "1 G B x", "0x10"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size_picks_a_readable_unit() -> None:
    assert format_size(512) == "512 B"
    assert format_size(64 * MiB) == "64.0 MiB"
    assert format_size(3 * GiB // 2) == "1.5 GiB"


@pytest.mark.parametrize("kwargs", [{"jobs": 0}, {"part_size": MiB}, {"retries": -1}, {"access_key": "k"}])
def test_options_refuse_unusable_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        StageOptions(**kwargs)


def test_option_defaults_match_the_cli_contract() -> None:
    options = StageOptions()
    assert (options.jobs, options.part_size, options.retries) == (16, 64 * MiB, 5)
    assert options.progress is None and options.progress_interval_s == 10.0


@pytest.mark.parametrize("value, fast", [(None, True), ("", True), ("botocore", False), ("BOTOCORE", False)])
def test_aif_stage_s3_get_botocore_turns_the_signed_reads_off(monkeypatch, value, fast) -> None:
    if value is None:
        monkeypatch.delenv(S3_GET_ENV, raising=False)
    else:
        monkeypatch.setenv(S3_GET_ENV, value)
    assert fast_s3_reads() is fast
