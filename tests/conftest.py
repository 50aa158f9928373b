"""Settings shared by every test directory.

The clients under test (boto3, awscli, rclone, s5cmd) read credentials, regions and checksum
defaults from the environment and from ``~/.aws``. A developer's own configuration must not leak
into the tests, so the environment is made hermetic before any test module imports boto3.
"""

from __future__ import annotations

import os

import pytest

# Variables that would change how an AWS client behaves if inherited from the caller's shell.
_INHERITED_CLIENT_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "RCLONE_CONFIG",
)

HERMETIC_CLIENT_ENV = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "NO_PROXY": "*",
}


def pytest_configure(config: pytest.Config) -> None:
    for name in _INHERITED_CLIENT_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(HERMETIC_CLIENT_ENV)
