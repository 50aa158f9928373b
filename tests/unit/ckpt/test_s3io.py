"""Where a checkpoint S3 target takes its endpoint, keys and region from."""

from __future__ import annotations

import pytest

from aif_gateway.ckpt.s3io import S3Settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookups in tests
    return monkeypatch


def test_arguments_win(clean_env):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "envkey")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    s = S3Settings.resolve("http://h:1/", "argkey", "argsecret", "eu-north-1")
    assert (s.endpoint, s.access_key, s.secret_key, s.region) == ("http://h:1", "argkey", "argsecret", "eu-north-1")


def test_environment(clean_env):
    clean_env.setenv("AWS_ENDPOINT_URL", "http://gw:9000")
    clean_env.setenv("AWS_ACCESS_KEY_ID", "envkey")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    clean_env.setenv("AWS_SESSION_TOKEN", "tok")
    s = S3Settings.resolve()
    assert (s.endpoint, s.access_key, s.secret_key, s.token, s.region) == (
        "http://gw:9000",
        "envkey",
        "envsecret",
        "tok",
        "us-east-1",
    )


def test_a_profile(clean_env, tmp_path):
    (tmp_path / "config").write_text("[profile ck]\nregion = eu-west-1\n")
    (tmp_path / "credentials").write_text("[ck]\naws_access_key_id = profkey\naws_secret_access_key = profsecret\n")
    clean_env.setenv("AWS_PROFILE", "ck")
    s = S3Settings.resolve("http://gw:9000")
    assert (s.access_key, s.secret_key, s.region) == ("profkey", "profsecret", "eu-west-1")


def test_what_is_missing_is_named(clean_env):
    with pytest.raises(ValueError, match="no S3 endpoint"):
        S3Settings.resolve()
    with pytest.raises(ValueError, match="no S3 credentials"):
        S3Settings.resolve("http://gw:9000")
