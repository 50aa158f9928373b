"""The client's request and error XML (client/xml.py) and how it reads S3 error answers (client/errors.py)."""

from __future__ import annotations

from aif_gateway.client import classify, client_error, complete_upload_body, parse_error, parse_upload_id

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def test_complete_upload_body_lists_parts_with_quoted_escaped_etags_and_checksums() -> None:
    body = complete_upload_body([(1, "a&b", {"ChecksumCRC64NVME": "AAA="}), (2, "c", {})])
    assert body == (
        b'<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"a&amp;b"</ETag>'
        b"<ChecksumCRC64NVME>AAA=</ChecksumCRC64NVME></Part>"
        b'<Part><PartNumber>2</PartNumber><ETag>"c"</ETag></Part></CompleteMultipartUpload>'
    )


def test_an_upload_id_is_read_from_the_namespaced_answer() -> None:
    answer = f'<InitiateMultipartUploadResult xmlns="{NS}"><UploadId>u-1</UploadId></InitiateMultipartUploadResult>'
    assert parse_upload_id(answer.encode()) == "u-1"


def test_an_error_document_gives_its_code_and_message_and_anything_else_nothing() -> None:
    assert parse_error(b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>") == ("NoSuchKey", "gone")
    assert parse_error(b"<html>proxy</html>") == (None, None)
    assert parse_error(b"") == (None, None)


def test_a_client_error_falls_back_to_the_status_and_reason() -> None:
    exc = client_error(503, b"", "Service Unavailable", "GetObject")
    assert exc.response["Error"] == {"Code": "503", "Message": "Service Unavailable"}
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_codes_are_classified() -> None:
    def kind(code: str) -> str | None:
        return classify(client_error(400, f"<Error><Code>{code}</Code></Error>".encode(), "", "GetObject"))

    assert kind("SlowDown") == "transient"
    assert kind("NoSuchBucket") == "missing"
    assert kind("AccessDenied") == "denied"
    assert kind("SignatureDoesNotMatch") == "bad_keys"
    assert kind("PreconditionFailed") == "changed"
    assert kind("InvalidArgument") is None
