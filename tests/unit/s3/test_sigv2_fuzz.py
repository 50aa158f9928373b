"""SigV2 verification on hostile input: whatever a request carries, the answer is an S3 error (or
an identity, for the one real signature), never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from aif_gateway.errors import S3Error
from aif_gateway.s3.sigv2 import authenticate_v2, signed_with_v2

from .test_sigv2 import ALICE, lookup, presigned, signed

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
QUERY_PIECES = st.sampled_from(["AWSAccessKeyId=", "Signature=", "Expires=", "acl", "uploadId=", "&", "=", "%", "+"])
QUERY = st.lists(st.one_of(QUERY_PIECES, TEXT), max_size=8).map("".join)


@given(
    authorization=st.one_of(st.none(), TEXT.map(lambda t: "AWS " + t), TEXT),
    date=st.one_of(st.none(), TEXT),
    amz_date=st.one_of(st.none(), TEXT),
    query=QUERY,
    path=TEXT.map(lambda t: "/" + t),
)
def test_any_request_gets_an_s3_answer(authorization, date, amz_date, query, path) -> None:
    headers = CIMultiDict({"Host": "gw"})
    for name, value in (("Authorization", authorization), ("Date", date), ("x-amz-date", amz_date)):
        if value is not None:
            headers[name] = value
    signed_with_v2(headers, query)
    try:
        authenticate_v2("GET", path, query, headers, lookup, region="us-east-1")
    except S3Error:
        pass


@given(position=st.integers(min_value=0, max_value=200), byte=st.integers(min_value=0, max_value=255))
def test_a_changed_byte_of_a_signed_request_is_never_accepted_as_someone_else(position, byte) -> None:
    for raw_path, raw_query, headers in (signed("GET", "/bucket/key"), presigned("GET", "/bucket/key")):
        target = f"{raw_path}?{raw_query}" if raw_query else raw_path
        index = position % len(target)
        changed = target[:index] + chr(byte) + target[index + 1 :]
        path, _, query = changed.partition("?")
        try:
            auth = authenticate_v2("GET", path, query, headers, lookup, region="us-east-1")
        except S3Error:
            continue
        assert auth.identity == ALICE  # only an equivalent request (e.g. an unsigned parameter) passes
