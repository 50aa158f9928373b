"""How the tests configure the Python S3 clients: path style, us-east-1, no retries.

Retries are off so that the first answer from the gateway is the one a test sees; a retried
500 would otherwise hide a gateway bug behind a later success.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from .gateway import Credentials


def client_config(checksums: str = "when_supported", *, region: str = "us-east-1", **s3_options) -> Config:
    """``checksums`` sets both request_checksum_calculation and response_checksum_validation.

    ``s3v4`` also for presigned URLs: botocore would otherwise presign with SigV2 (accepted too,
    and tested on its own in test_sigv2.py).
    """
    return Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path", **s3_options},
        retries={"mode": "standard", "total_max_attempts": 1},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )


def boto3_client(
    endpoint: str,
    credentials: Credentials,
    *,
    checksums: str = "when_supported",
    region: str = "us-east-1",
    **s3_options,
):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=client_config(checksums, region=region, **s3_options),
    )
