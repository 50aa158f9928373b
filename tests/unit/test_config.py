import json
import os
import stat

import pytest

from aif_gateway.config import ConfigError, load_settings, parse_listen
from aif_gateway.credentials import CREDENTIALS_FILE, resolve_identities
from aif_gateway.identity import IdentityError, load_users_file


def test_listen_parses_host_and_port():
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:9001") == ("::1", 9001)


@pytest.mark.parametrize("bad", ["9000", "host:", "host:99999", "host:x"])
def test_listen_rejects_malformed_addresses(bad):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(bad)


def test_flags_override_config_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[server]\nroot = "/nowhere"\nworkers = 3\nlisten = "0.0.0.0:9100"\n[buckets]\ndatasets = "{data}"\n'
    )
    s = load_settings(config_file=cfg, root=tmp_path, workers=None, listen="127.0.0.1:9200")
    assert s.root == tmp_path
    assert s.workers == 3
    assert (s.host, s.port) == ("127.0.0.1", 9200)
    assert s.bucket_map == {"datasets": data}


def test_region_flag_overrides_config_file_over_default(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[server]\nregion = "eu-central-1"\n')
    assert load_settings().region == "us-east-1"
    assert load_settings(config_file=cfg).region == "eu-central-1"
    assert load_settings(config_file=cfg, region="eu-west-1").region == "eu-west-1"
    with pytest.raises(ConfigError, match="region"):
        load_settings(region="eu west/1")


def test_bucket_map_must_name_an_existing_absolute_directory(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[buckets]\nx = "relative/dir"\n')
    with pytest.raises(ConfigError, match="absolute"):
        load_settings(config_file=cfg)
    cfg.write_text(f'[buckets]\nx = "{tmp_path}/missing"\n')
    with pytest.raises(ConfigError, match="no such directory"):
        load_settings(config_file=cfg)


def test_unknown_config_keys_are_reported(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[server]\nport = 9000\n")
    with pytest.raises(ConfigError, match="port"):
        load_settings(config_file=cfg)


def private_file(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_users_file_round_trip(tmp_path):
    f = private_file(
        tmp_path / "users.toml",
        '[[users]]\nname="a"\naccess_key="K1"\nsecret_key="S1"\nuid=1001\ngid=100\n'
        '[[users]]\nname="b"\naccess_key="K2"\nsecret_key="S2"\nadmin=true\n',
    )
    users = load_users_file(f)
    assert [(u.name, u.uid, u.gid, u.admin) for u in users] == [("a", 1001, 100, False), ("b", None, None, True)]


def test_users_file_errors_name_the_problem(tmp_path):
    f = private_file(tmp_path / "users.toml", '[[users]]\nname="a"\naccess_key="K1"\n')
    with pytest.raises(IdentityError, match="secret_key"):
        load_users_file(f)


def test_generated_credentials_persist_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("AIF_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AIF_SECRET_KEY", raising=False)
    table, generated, created = resolve_identities(tmp_path, None)
    assert created and generated is not None and generated.admin
    path = tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["access_key"] == generated.access_key
    _, again, created_again = resolve_identities(tmp_path, None)
    assert not created_again and again == generated
    assert table.lookup(generated.access_key) == generated


def test_environment_keys_define_an_admin_and_suppress_generation(tmp_path, monkeypatch):
    monkeypatch.setenv("AIF_ACCESS_KEY", "ENVKEY")
    monkeypatch.setenv("AIF_SECRET_KEY", "ENVSECRET")
    table, generated, _ = resolve_identities(tmp_path, None)
    assert generated is None
    assert table.lookup("ENVKEY").admin
    assert not (tmp_path / CREDENTIALS_FILE).exists()


def test_half_set_environment_keys_are_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AIF_ACCESS_KEY", "ENVKEY")
    monkeypatch.delenv("AIF_SECRET_KEY", raising=False)
    with pytest.raises(IdentityError, match="both"):
        resolve_identities(tmp_path, None)


def test_tls_needs_both_files(tmp_path):
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key"):
        load_settings(tls_cert=tmp_path / "cert.pem")


def test_tls_files_that_do_not_load_are_reported_up_front(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="cannot load certificate"):
        load_settings(tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tls_cert=tmp_path / "missing.pem", tls_key=tmp_path / "key.pem")


def test_limits_and_timeouts_default_to_aws_and_nginx_values(tmp_path):
    s = load_settings(root=tmp_path)
    assert (s.limits.max_object_size, s.limits.max_part_size, s.limits.max_parts) == (5 << 30, 5 << 30, 10_000)
    assert (s.header_timeout, s.keepalive_timeout, s.limits.body_stall_timeout) == (20.0, 75.0, 120.0)


def test_limits_and_timeouts_come_from_the_config_file(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        "[server]\nheader_timeout = 5\nkeepalive_timeout = 30.5\n"
        '[limits]\nmax_object_size = "100MiB"\nmax_part_size = 1048576\nmax_parts = 500\n'
        "body_stall_timeout = 10\n"
    )
    s = load_settings(config_file=cfg)
    assert (s.header_timeout, s.keepalive_timeout) == (5.0, 30.5)
    assert (s.limits.max_object_size, s.limits.max_part_size) == (100 << 20, 1 << 20)
    assert (s.limits.max_parts, s.limits.body_stall_timeout) == (500, 10.0)


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("limits", "max_parts = 10001", "max_parts must be an integer from 1 to 10000"),
        ("limits", "max_parts = 0", "max_parts must be"),
        ("limits", 'max_object_size = "5 furlongs"', "max_object_size must be a positive number of bytes"),
        ("limits", "max_part_size = -1", "max_part_size must be"),
        ("limits", "colour = 1", r"unknown \[limits\] key"),
        ("server", "header_timeout = 0", "header_timeout must be a positive number of seconds"),
        ("server", 'keepalive_timeout = "long"', "keepalive_timeout must be"),
    ],
)
def test_bad_limits_are_reported(tmp_path, section, line, message):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=cfg)
