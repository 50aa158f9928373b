"""Properties of the request-body XML parsers, with hypothesis: aif_gateway/s3/xmlio.py and the
documents built on it (CompleteMultipartUpload, DeleteObjects, Tagging).

- Any bytes, and near-valid documents (any element order, namespaces and prefixes, comments,
  CDATA, character references, odd numbers and missing or extra elements), give a parsed value
  or an S3Error, never another exception (that would be a 500 with a traceback).
- Documents rendered from values (any text XML 1.0 can carry) parse back to those values.
- A document with a DTD (internal entities, "billion laughs", external entities, parameter
  entities) is MalformedXML: no entity is expanded and no file is read.
"""

from __future__ import annotations

from hypothesis import event, example, given
from hypothesis import strategies as st

from aif_gateway.awsv4 import S3_NAMESPACE
from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers.delete_objects import parse_delete
from aif_gateway.s3.handlers.multipart import parse_complete
from aif_gateway.s3.handlers.tagging import parse_tagging
from aif_gateway.s3.xmlio import escape_text, parse_items, parse_xml

PARSERS = {
    "CompleteMultipartUpload": parse_complete,
    "Delete": parse_delete,
    "Tagging": parse_tagging,
    "items": lambda body: parse_items(body, "Delete", "Object", 3),
    "any": parse_xml,
}

# Characters XML 1.0 can carry (as themselves or as references): no other C0 control, no
# surrogate, no U+FFFE/U+FFFF.
XML_CHARS = st.characters(
    exclude_categories=("Cs",),
    exclude_characters=[chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\ufffe", "\uffff"],
)
XML_TEXT = st.text(XML_CHARS, max_size=30)
NAMES = [
    "CompleteMultipartUpload",
    "Part",
    "PartNumber",
    "ETag",
    "ChecksumCRC32",
    "ChecksumSHA256",
    "ChecksumType",
    "Delete",
    "Object",
    "Key",
    "VersionId",
    "Quiet",
    "Tagging",
    "TagSet",
    "Tag",
    "Value",
    "x",
    "a:b",
]
NUMBERS = st.one_of(
    st.integers(1, 10_000).map(str),
    st.integers(-2, 10_002).map(str),
    st.sampled_from(["", " 7 ", "\u00b2", "\u0661", "1e3", "0x10", "9" * 5000, "00001", "+1"]),
)


def _outcome(parser, body: bytes):
    try:
        return parser(body)
    except S3Error as err:
        event(err.code)
        return err


# -- rendering trees with every spelling XML allows ---------------------------------------------


@st.composite
def _text(draw, value: str) -> str:
    style = draw(st.sampled_from(["escaped", "cdata", "references", "split"]))
    if style == "cdata" and "]]>" not in value and "\r" not in value:
        return f"<![CDATA[{value}]]>"
    if style == "references":
        return "".join(f"&#{ord(c)};" if draw(st.booleans()) else f"&#x{ord(c):X};" for c in value)
    if style == "split" and value:
        at = draw(st.integers(0, len(value)))
        return escape_text(value[:at]) + "<!-- c -->" + escape_text(value[at:])
    return escape_text(value)


@st.composite
def _render(draw, tree) -> str:
    """``tree`` is text or (name, [children]); spelled with prefixes, namespaces, comments..."""
    if isinstance(tree, str):
        return draw(_text(tree))
    name, children = tree
    prefix = draw(st.sampled_from(["", "", "s3:"]))
    namespace = draw(st.sampled_from(["", f' xmlns="{S3_NAMESPACE}"', ' xmlns:s3="urn:x"', ' a="1"']))
    inner = "".join(draw(_render(child)) for child in children)
    # Whitespace only between elements: inside text it would be part of the value.
    has_text = any(isinstance(child, str) for child in children)
    space = draw(st.sampled_from(["", "<!-- note -->", "<?pi data?>"] + ([] if has_text else [" ", "\n  "])))
    return f"<{prefix}{name}{namespace}>{space}{inner}</{prefix}{name}>"


def _document(draw, tree) -> bytes:
    declaration = draw(st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>\n']))
    return (declaration + draw(_render(tree))).encode("utf-8")


@st.composite
def _noise(draw) -> tuple:
    """An element no parser expects, or an expected one in the wrong place."""
    return (draw(st.sampled_from(NAMES)), [draw(XML_TEXT)])


def _maybe(draw, element) -> list:
    return [element] if draw(st.integers(0, 9)) else []


@st.composite
def _complete_tree(draw) -> tuple:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        children = _maybe(draw, ("PartNumber", [draw(NUMBERS)])) + _maybe(draw, ("ETag", [draw(XML_TEXT)]))
        children += draw(
            st.lists(
                st.builds(
                    lambda n, v: (n, [v]), st.sampled_from(["ChecksumCRC32", "ChecksumType", "ChecksumX"]), XML_TEXT
                ),
                max_size=2,
            )
        )
        children += draw(st.lists(_noise(), max_size=1))
        parts.append(("Part", draw(st.permutations(children))))
    return (
        draw(st.sampled_from(["CompleteMultipartUpload"] * 3 + ["Part"])),
        parts + draw(st.lists(_noise(), max_size=1)),
    )


@st.composite
def _delete_tree(draw) -> tuple:
    objects = []
    for _ in range(draw(st.integers(0, 4))):
        children = _maybe(draw, ("Key", [draw(XML_TEXT)])) + draw(
            st.lists(st.just(("VersionId", ["null"])), max_size=1)
        )
        objects.append(("Object", children + draw(st.lists(_noise(), max_size=1))))
    quiet = draw(
        st.lists(st.builds(lambda v: ("Quiet", [v]), st.sampled_from(["true", " TRUE ", "no", ""])), max_size=2)
    )
    return (draw(st.sampled_from(["Delete"] * 3 + ["Object"])), draw(st.permutations(objects + quiet)))


@st.composite
def _tagging_tree(draw) -> tuple:
    tags = [
        (
            "Tag",
            draw(st.permutations(_maybe(draw, ("Key", [draw(XML_TEXT)])) + _maybe(draw, ("Value", [draw(XML_TEXT)])))),
        )
        for _ in range(draw(st.integers(0, 12)))
    ]
    tag_set = ("TagSet", tags + draw(st.lists(_noise(), max_size=1)))
    return (draw(st.sampled_from(["Tagging"] * 3 + ["TagSet"])), _maybe(draw, tag_set))


TREES = {"CompleteMultipartUpload": _complete_tree(), "Delete": _delete_tree(), "Tagging": _tagging_tree()}
TOKENS = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#xD800;",
    b"&#x1;",
    b"]]>",
    b"<!--",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"</Part>",
    b"<Part>",
    b"<?xml version='1.0'?>",
]


@st.composite
def _near_valid_documents(draw, root: str) -> bytes:
    body = bytearray(_document(draw, draw(TREES[root])))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(0, len(body)))
        if draw(st.booleans()):
            body[at:at] = draw(st.sampled_from(TOKENS))
        else:
            del body[at : at + draw(st.integers(1, 8))]
    return bytes(body)


# -- anything in, S3Error or a value out ----------------------------------------------------------------


@given(body=st.binary(max_size=400), parser=st.sampled_from(sorted(PARSERS)))
def test_arbitrary_bytes_give_a_value_or_an_s3_error(body, parser):
    _outcome(PARSERS[parser], body)


@given(data=st.data(), root=st.sampled_from(sorted(TREES)))
# "²" is a digit to str.isdigit() but not to int(); int() refuses more than 4,300 digits.
@example(
    data=None,
    root=b"<CompleteMultipartUpload><Part><PartNumber>\xc2\xb2</PartNumber><ETag>e</ETag></Part>"
    b"</CompleteMultipartUpload>",
)
@example(
    data=None,
    root=b"<CompleteMultipartUpload><Part><PartNumber>" + b"9" * 5000 + b"</PartNumber><ETag>e"
    b"</ETag></Part></CompleteMultipartUpload>",
)
def test_near_valid_documents_give_a_value_or_an_s3_error(data, root):
    if data is None:  # an @example: the document itself
        body, root = root, "CompleteMultipartUpload"
    else:
        body = data.draw(_near_valid_documents(root))
    outcome = _outcome(PARSERS[root], body)
    if not isinstance(outcome, S3Error):
        event("parsed")


# -- values survive the trip through a document -----------------------------------------------------


@given(data=st.data(), keys=st.lists(XML_TEXT, min_size=1, max_size=5), quiet=st.booleans())
def test_delete_documents_parse_back_to_their_keys(data, keys, quiet):
    tree = ("Delete", [("Object", [("Key", [key])]) for key in keys] + [("Quiet", ["true" if quiet else "false"])])
    request = parse_delete(_document(data.draw, tree))
    assert [entry.key for entry in request.entries] == keys
    assert request.quiet == quiet


@given(
    data=st.data(),
    parts=st.lists(st.tuples(st.integers(1, 10_000), XML_TEXT), min_size=1, max_size=5, unique_by=lambda part: part[0]),
)
def test_complete_documents_parse_back_to_their_parts(data, parts):
    parts.sort()
    tree = (
        "CompleteMultipartUpload",
        [("Part", [("ETag", [f'"{etag}"']), ("PartNumber", [str(number)])]) for number, etag in parts],
    )
    completed = parse_complete(_document(data.draw, tree))
    assert [(part.part_number, part.etag) for part in completed] == parts


@given(
    data=st.data(),
    tags=st.dictionaries(XML_TEXT.filter(bool).filter(lambda k: not k.startswith("aws:")), XML_TEXT, max_size=10),
)
def test_tagging_documents_parse_back_to_their_tags(data, tags):
    tree = ("Tagging", [("TagSet", [("Tag", [("Key", [k]), ("Value", [v])]) for k, v in tags.items()])])
    assert parse_tagging(_document(data.draw, tree)) == tags


# -- DTDs and entities ------------------------------------------------------------------------------------

SECRET_FILE_MARKER = "a file the gateway must never read"
LAUGHS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i else "lol"}">' for i in range(10))


@given(
    subset=st.sampled_from(
        [
            LAUGHS,
            '<!ENTITY x SYSTEM "file:///etc/passwd">',
            '<!ENTITY x SYSTEM "file:///{secret}">',
            '<!ENTITY x PUBLIC "-//x//y" "http://127.0.0.1:1/x">',
            '<!ENTITY % p SYSTEM "file:///{secret}"> %p;',
            "<!ENTITY % p \"<!ENTITY x 'inner'>\"> %p;",
            '<!ENTITY x "text">',
            "<!ELEMENT Delete ANY>",
            "",
        ]
    ),
    external=st.sampled_from(["", ' SYSTEM "file:///{secret}"', ' PUBLIC "-//x//y" "file:///{secret}"']),
    reference=st.sampled_from(["&x;", "&lol9;", "", "a"]),
    root=st.sampled_from(sorted(PARSERS)),
)
def test_documents_with_a_dtd_are_malformed(tmp_path_factory, subset, external, reference, root):
    secret = tmp_path_factory.getbasetemp() / "secret.xml"
    secret.write_text(f"<Key>{SECRET_FILE_MARKER}</Key>")
    doctype = f"<!DOCTYPE Delete{external}" + (f" [{subset}]" if subset else "") + ">"
    body = (doctype + f"<Delete><Object><Key>{reference}</Key></Object></Delete>").replace("{secret}", str(secret)[1:])
    outcome = _outcome(PARSERS[root], body.encode())
    assert isinstance(outcome, S3Error) and outcome.code == "MalformedXML"


@given(
    name=st.text(st.sampled_from("abcxyz_:0-"), min_size=1, max_size=8).filter(
        lambda n: n not in ("amp", "lt", "gt", "quot", "apos")
    )
)
def test_entity_references_without_a_dtd_are_malformed(name):
    outcome = _outcome(parse_delete, f"<Delete><Object><Key>&{name};</Key></Object></Delete>".encode())
    assert isinstance(outcome, S3Error) and outcome.code == "MalformedXML"


def test_deeply_nested_documents_are_parsed_without_recursion():
    depth = 200_000
    body = b"<Delete><Object><Key>k</Key>" + b"<a>" * depth + b"</a>" * depth + b"</Object></Delete>"
    assert [entry.key for entry in parse_delete(body).entries] == ["k"]
