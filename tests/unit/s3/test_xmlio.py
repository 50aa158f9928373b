from xml.etree import ElementTree as ET

import pytest

from aif_gateway.awsv4 import S3_NAMESPACE
from aif_gateway.errors import S3Error
from aif_gateway.s3.responses import error_response, http_date, iso8601
from aif_gateway.s3.xmlio import child_text, escape_text, parse_xml, to_xml


def test_document_has_declaration_namespace_and_nested_repeated_elements():
    doc = to_xml("ListBucketResult", [("Name", "b"), ("Contents", [("Key", "a")]), ("Contents", [("Key", "c")])])
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(doc)
    assert root.tag == f"{{{S3_NAMESPACE}}}ListBucketResult"
    keys = [e.text for e in root.iter(f"{{{S3_NAMESPACE}}}Key")]
    assert keys == ["a", "c"]


def test_error_documents_have_no_namespace():
    assert ET.fromstring(to_xml("Error", [("Code", "NoSuchKey")], namespace=False)).tag == "Error"


def test_values_render_by_type_and_none_is_left_out():
    doc = to_xml("R", [("T", True), ("F", False), ("N", 42), ("Skip", None), ("Empty", "")], namespace=False)
    assert b"<T>true</T><F>false</F><N>42</N><Empty></Empty></R>" in doc
    assert b"Skip" not in doc


def test_root_may_carry_text_only():
    assert ET.fromstring(to_xml("LocationConstraint", "eu-west-1")).text == "eu-west-1"


def test_markup_characters_are_escaped():
    assert escape_text("a<b>&\"'") == "a&lt;b&gt;&amp;&quot;&apos;"


def test_control_characters_become_numeric_references_like_s3():
    assert escape_text("a\nb\rc\x01\td") == "a&#xA;b&#xD;c&#x1;&#x9;d"


def test_newline_and_carriage_return_in_a_key_survive_a_round_trip():
    key = "dir/line1\nline2\r\n end"
    root = ET.fromstring(to_xml("R", [("Key", key)], namespace=False))
    assert root.find("Key").text == key


def test_non_ascii_keys_are_utf8():
    doc = to_xml("R", [("Key", "données/日本")], namespace=False)
    assert "données/日本".encode() in doc


def test_parse_strips_namespace_and_prefix_from_tags():
    root = parse_xml(
        f'<Delete xmlns="{S3_NAMESPACE}"><Object><Key>a&amp;b</Key></Object><Quiet>true</Quiet></Delete>'.encode()
    )
    assert root.tag == "Delete"
    assert [child_text(o, "Key") for o in root.findall("Object")] == ["a&b"]
    assert child_text(root, "Quiet") == "true"
    assert child_text(root, "Missing") is None
    assert parse_xml(b'<s3:Tagging xmlns:s3="x"><s3:TagSet/></s3:Tagging>').find("TagSet") is not None


def test_parse_keeps_numeric_references_for_cr_and_lf():
    root = parse_xml(b"<Delete><Object><Key>a&#13;b&#10;c</Key></Object></Delete>")
    assert child_text(root.find("Object"), "Key") == "a\rb\nc"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<a>",
        b"not xml",
        b"<a></b>",
        b'<!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
        b"<a>&undefined;</a>",
    ],
)
def test_malformed_dtd_and_entities_are_malformed_xml(body):
    with pytest.raises(S3Error) as info:
        parse_xml(body)
    assert info.value.code == "MalformedXML"


def test_oversized_documents_are_refused():
    with pytest.raises(S3Error) as info:
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_size=50)
    assert info.value.code == "MalformedXML"


# -- error documents (responses.py renders them with xmlio) --------------------------------------


def test_error_document_fields_status_and_headers():
    err = S3Error("InvalidRange", extra={"ActualObjectSize": "3"}, headers={"Content-Range": "bytes */3"})
    response = error_response(err, "REQID", "/b/k", head=False)
    assert response.status == 416
    assert response.content_type == "application/xml"
    assert response.headers["Content-Range"] == "bytes */3"
    root = ET.fromstring(response.body)
    assert [child.tag for child in root] == ["Code", "Message", "ActualObjectSize", "Resource", "RequestId"]
    assert root.findtext("Code") == "InvalidRange"
    assert root.findtext("Resource") == "/b/k"
    assert root.findtext("RequestId") == "REQID"


def test_head_errors_have_no_body():
    response = error_response(S3Error("NoSuchKey"), "REQID", "/b/k", head=True)
    assert response.status == 404 and response.body is None


def test_error_resource_is_the_request_path_unless_the_error_names_one():
    store_named = S3Error("NoSuchKey", resource="k")
    assert ET.fromstring(error_response(store_named, "R", "/b/k", head=False).body).findtext("Resource") == "/b/k"
    copy_source = S3Error("NoSuchKey", resource="/src/key")
    assert ET.fromstring(error_response(copy_source, "R", "/b/k", head=False).body).findtext("Resource") == "/src/key"


def test_error_documents_stay_parseable_with_any_key():
    err = S3Error("NoSuchKey", extra={"Key": "a\x00b\nc"})
    root = ET.fromstring(error_response(err, "R", "/b/a\x00b\nc", head=False).body)
    assert root.findtext("Key") == "a%00b\nc"
    assert root.findtext("Resource") == "/b/a%00b\nc"


def test_iso8601_has_milliseconds_and_http_date_is_gmt():
    assert iso8601(1_735_732_800_123_999_999) == "2025-01-01T12:00:00.123Z"
    assert http_date(1_735_732_800_999_999_999) == "Wed, 01 Jan 2025 12:00:00 GMT"
