"""Properties of SigV4 verification (aif_gateway/s3/sigv4.py), with hypothesis.

- Garbled input (Authorization headers, presigned query strings, dates, signed-header lists,
  paths) is answered with an S3Error and nothing else: any other exception is a 500 with a
  traceback in the log, for a request anyone can send.
- Requests that botocore's own signers sign, over any key, query parameters and header values,
  are accepted; a change of one byte to the signature, the path or a signed header is refused
  with SignatureDoesNotMatch (unless the change canonicalises to the same request).
- canonical_uri and canonical_query say what botocore signs.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from botocore.auth import S3SigV4Auth
from hypothesis import event, example, given
from hypothesis import strategies as st
from multidict import CIMultiDict

from aif_gateway.errors import S3Error
from aif_gateway.s3.sigv4 import (
    EMPTY_SHA256,
    STREAMING_MODES,
    UNSIGNED_PAYLOAD,
    AuthContext,
    _query_pairs,
    authenticate,
    canonical_query,
    canonical_uri,
)

from .test_sigv4 import ACCESS_KEY, ALICE, lookup, sign_header, sign_query

# -- strategies --------------------------------------------------------------------------------

# Text a client can put in a URL: any character but surrogates (botocore encodes it as UTF-8).
CLEAN = st.characters(exclude_categories=("Cs",))
# aiohttp decodes header bytes that are not UTF-8 with surrogateescape: U+DC80..U+DCFF.
ESCAPED_BYTE = st.integers(0xDC80, 0xDCFF).map(chr)
SYNTAX = st.sampled_from(list("/,;=&%+ \t~?#") + ["%2F", "%25", "%zz", "%", "\u00a0", "\u0660", "\u00b2"])


def _joined(pieces: st.SearchStrategy[str], min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    """Text made of ``pieces`` (characters or longer runs)."""
    return st.lists(pieces, min_size=min_size, max_size=max_size).map("".join)


JUNK = _joined(st.one_of(CLEAN, ESCAPED_BYTE, SYNTAX))
KEYS = _joined(st.one_of(CLEAN, st.sampled_from(list(" %+~/=&?#;:@!$'()*,") + ["%41", "%2F", ".."])), 1, 40)
PARAM_NAMES = _joined(st.one_of(CLEAN, st.sampled_from(list(" %+~=&"))), 1, 12).filter(
    lambda name: not name.lower().startswith("x-amz-")
)
PARAMS = st.dictionaries(PARAM_NAMES, _joined(st.one_of(CLEAN, st.sampled_from(list(" %+~=&/"))), 0, 16), max_size=4)
# Header values as they arrive: visible ASCII and runs of spaces and tabs inside (HTTP strips
# them at the ends), which canonicalisation must fold as botocore does.
HEADER_VALUES = (
    _joined(st.sampled_from([chr(c) for c in range(0x21, 0x7F)] + [" ", "  ", "\t", " \t "]), 1, 24)
    .map(str.strip)
    .filter(bool)
)
META_HEADERS = st.dictionaries(
    st.text(st.sampled_from("abcxyz0-"), min_size=1, max_size=8).map(lambda s: "x-amz-meta-" + s),
    HEADER_VALUES,
    max_size=3,
)
HEX = "0123456789abcdef"


# A fixed "now" for the garbled requests, so that an example replays exactly.
NOW = 1767225600.0
AMZ_DATE = "20260101T000000Z"
ARABIC_DIGITS_DATE = "\u0662\u0660\u0662\u0666\u0660\u0661\u0660\u0661"  # isdigit() says yes


class _Parts:
    """Draws a request's parts, each valid except a few chosen ones (at most two), which are a
    plausible wrong value (None: left out) or junk. Mostly valid requests get past the early
    checks, so every later check meets garbage too."""

    def __init__(self, draw, names: list[str]) -> None:
        self._draw = draw
        self._garbled = draw(st.sets(st.sampled_from(names), max_size=2))

    def __call__(self, name: str, valid, *wrong, junk: bool = True):
        if name not in self._garbled:
            return valid
        if not junk:
            return self._draw(st.sampled_from(wrong))
        return self._draw(st.one_of(st.sampled_from(wrong), JUNK) if wrong else JUNK)


_HEADER_PARTS = [
    "scheme",
    "access key",
    "date",
    "region",
    "service",
    "terminator",
    "separator",
    "signed headers",
    "signature",
    "x-amz-date",
    "x-amz-content-sha256",
    "path",
    "method",
    "extra header",
]


@st.composite
def _header_auth_requests(draw) -> tuple[str, str, CIMultiDict]:
    part = _Parts(draw, _HEADER_PARTS)
    credential = "/".join(
        [
            part("access key", ACCESS_KEY, "AKIDUNKNOWN", ""),
            part("date", AMZ_DATE[:8], ARABIC_DIGITS_DATE, "20200101", "2026010"),
            part("region", "us-east-1", "", "eu-west-1", "\udcff"),
            part("service", "s3", "S3", "ec2"),
            part("terminator", "aws4_request", ""),
        ]
    )
    sep = part("separator", ", ", ",", ",,", ";", " ", "")
    signed = part("signed headers", "host;x-amz-content-sha256;x-amz-date", "Host", "host;;x-amz-date", "x-amz-date")
    signature = part("signature", "0" * 64, "", "0" * 63 + "\udcff")
    scheme = part("scheme", "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1", "AWS", "")
    headers = CIMultiDict(
        {
            "Host": "gw.example",
            "Authorization": f"{scheme} Credential={credential}{sep}SignedHeaders={signed}{sep}Signature={signature}",
        }
    )
    for name, value in [
        (
            "x-amz-date",
            part(
                "x-amz-date",
                AMZ_DATE,
                AMZ_DATE.lower(),
                ARABIC_DIGITS_DATE + "T000000Z",
                "20260101T000000",
                "20261301T000000Z",
                None,
            ),
        ),
        (
            "x-amz-content-sha256",
            part(
                "x-amz-content-sha256",
                EMPTY_SHA256,
                UNSIGNED_PAYLOAD,
                *STREAMING_MODES,
                EMPTY_SHA256.upper(),
                EMPTY_SHA256[1:],
                None,
            ),
        ),
        (part("extra header", None, "x-amz-meta-a", "host", "x-amz-date", "authorization"), draw(JUNK)),
    ]:
        if name is not None and value is not None:
            headers.add(name, value)
    method = part("method", "GET", "PUT", "gEt", "")
    return method, part("path", "/bucket/key", "/", "", "/b/\udcff", "/b/%zz%"), headers


def _well_formed_header_request(path: str = "/bucket/key", region: str = "us-east-1"):
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{AMZ_DATE[:8]}/{region}/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
    )
    headers = {
        "Host": "gw.example",
        "Authorization": authorization,
        "x-amz-date": AMZ_DATE,
        "x-amz-content-sha256": EMPTY_SHA256,
    }
    return "GET", path, CIMultiDict(headers)


_PRESIGNED_PARTS = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "access key",
    "date",
    "region",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Content-Sha256",
    "encoding",
    "tail",
    "header",
    "path",
]


@st.composite
def _presigned_requests(draw) -> tuple[str, str, str, CIMultiDict]:
    part = _Parts(draw, _PRESIGNED_PARTS)
    credential = (
        f"{part('access key', ACCESS_KEY, 'AKIDUNKNOWN')}/{part('date', AMZ_DATE[:8], ARABIC_DIGITS_DATE)}/"
        f"{part('region', 'us-east-1', '', 'us-east-1/x')}/s3/aws4_request"
    )
    params = {
        "X-Amz-Algorithm": part("X-Amz-Algorithm", "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1", None),
        "X-Amz-Credential": part("X-Amz-Credential", credential, None, credential + "/"),
        "X-Amz-Date": part("X-Amz-Date", AMZ_DATE, ARABIC_DIGITS_DATE + "T000000Z", "20251301T000000Z", None),
        "X-Amz-Expires": part("X-Amz-Expires", "3600", "0", "604801", "-1", "1e3", "\u0663", "9" * 5000, None),
        "X-Amz-SignedHeaders": part("X-Amz-SignedHeaders", "host", "host;x-amz-meta-a", "HOST", None),
        "X-Amz-Signature": part("X-Amz-Signature", "0" * 64, "", None),
        "X-Amz-Content-Sha256": part("X-Amz-Content-Sha256", None, UNSIGNED_PAYLOAD, EMPTY_SHA256, "zz"),
    }
    raw = lambda text: text  # noqa: E731
    quoted = lambda text: quote(text.encode("utf-8", "surrogateescape"), safe="")  # noqa: E731
    encode = part("encoding", quoted, raw, junk=False)
    query = "&".join(f"{encode(name)}={encode(value)}" for name, value in params.items() if value is not None)
    query += part("tail", "", "&", "&&X-Amz-Algorithm", "&Signature=x", "&=", "&%", "&X-Amz-Signature=1")
    headers = CIMultiDict({"Host": "gw.example"})
    header = part("header", None, "x-amz-content-sha256", "x-amz-meta-a", "authorization")
    if header is not None:
        headers[header] = draw(JUNK)
    return "GET", part("path", "/bucket/key", "", "/b/%zz"), query, headers


def _well_formed_presigned_request(expires: str = "3600"):
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F{AMZ_DATE[:8]}%2Fus-east-1%2Fs3%2F"
        f"aws4_request&X-Amz-Date={AMZ_DATE}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&"
        f"X-Amz-Signature={'0' * 64}"
    )
    return "GET", "/bucket/key", query, CIMultiDict({"Host": "gw.example"})


def _authenticate_or_s3error(method, raw_path, raw_query, headers, now) -> AuthContext | S3Error:
    try:
        return authenticate(method, raw_path, raw_query, headers, lookup, now=now)
    except S3Error as err:
        event(err.code)  # how deep the examples reach: pytest --hypothesis-show-statistics
        return err


def _code(method, raw_path, raw_query, headers) -> str | None:
    outcome = _authenticate_or_s3error(method, raw_path, raw_query, headers, None)
    return outcome.code if isinstance(outcome, S3Error) else None


# -- garbled requests: S3Error and nothing else --------------------------------------------------------


@given(request=_header_auth_requests())
# A credential part that is not UTF-8 on the wire (a lone surrogate from aiohttp) reached the HMAC.
@example(request=_well_formed_header_request(region="\udcff"))
# A path that is not UTF-8 (aiohttp's pure-Python parser lets one through) reached unquote.
@example(request=_well_formed_header_request(path="/b/\udcff"))
def test_garbled_header_auth_gives_only_s3_errors(request):
    method, raw_path, headers = request
    assert isinstance(_authenticate_or_s3error(method, raw_path, "", headers, NOW), S3Error)


@given(request=_presigned_requests())
# int() refuses more than 4,300 digits, and "²" is a digit to isdigit() but not to int().
@example(request=_well_formed_presigned_request(expires="9" * 5000))
@example(request=_well_formed_presigned_request(expires="\u00b2"))
def test_garbled_presigned_query_gives_only_s3_errors(request):
    method, raw_path, raw_query, headers = request
    assert isinstance(_authenticate_or_s3error(method, raw_path, raw_query, headers, NOW), S3Error)


@given(
    raw_query=_joined(st.one_of(CLEAN, ESCAPED_BYTE, SYNTAX, st.sampled_from(["X-Amz-Algorithm", "AWSAccessKeyId"]))),
    raw_path=JUNK,
)
def test_any_query_string_gives_only_s3_errors(raw_query, raw_path):
    outcome = _authenticate_or_s3error("GET", raw_path, raw_query, CIMultiDict({"Host": "gw.example"}), None)
    assert isinstance(outcome, S3Error)


# -- botocore's requests: accepted, and refused after any one-byte change ------------------------


def _path(key: str) -> str:
    # What botocore's serializer puts on the wire for a key (percent_encode with safe "/~").
    return "/bucket/" + quote(key, safe="/~")


@given(key=KEYS, params=PARAMS, meta=META_HEADERS, method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE"]))
@example(
    key="a  b/ c%2F+~", params={"prefix": "a b+c", "delimiter": "/"}, meta={"x-amz-meta-a": "x \t  y"}, method="PUT"
)
def test_botocore_header_signed_requests_are_accepted(key, params, meta, method):
    raw_path, raw_query, headers = sign_header(method, _path(key), headers=meta, params=params or None)
    ctx = authenticate(method, raw_path, raw_query, headers, lookup)
    assert ctx.identity == ALICE


@given(key=KEYS, params=PARAMS, meta=META_HEADERS, method=st.sampled_from(["GET", "PUT"]))
def test_botocore_presigned_requests_are_accepted(key, params, meta, method):
    raw_path, raw_query, headers = sign_query(method, _path(key), params=params or None, headers=meta)
    ctx = authenticate(method, raw_path, raw_query, headers, lookup)
    assert ctx.identity == ALICE and ctx.payload == "PRESIGNED"


def _change_one_char(data: st.DataObject, text: str, alphabet: str) -> str:
    at = data.draw(st.integers(0, len(text) - 1))
    new = data.draw(st.sampled_from([c for c in alphabet if c != text[at]]))
    return text[:at] + new + text[at + 1 :]


PATH_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + " "


@given(data=st.data(), key=KEYS, presigned=st.booleans())
def test_a_changed_signature_is_refused(data, key, presigned):
    if presigned:
        raw_path, raw_query, headers = sign_query("GET", _path(key))
        before, _, signature = raw_query.rpartition("X-Amz-Signature=")
        raw_query = before + "X-Amz-Signature=" + _change_one_char(data, signature, HEX)
    else:
        raw_path, raw_query, headers = sign_header("GET", _path(key))
        before, _, signature = headers["Authorization"].rpartition("Signature=")
        headers["Authorization"] = before + "Signature=" + _change_one_char(data, signature, HEX)
    assert _code("GET", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


@given(data=st.data(), key=KEYS, presigned=st.booleans())
def test_a_changed_path_is_refused_unless_it_means_the_same(data, key, presigned):
    raw_path, raw_query, headers = (sign_query if presigned else sign_header)("GET", _path(key))
    changed = "/" + _change_one_char(data, raw_path[1:], PATH_CHARS)
    expected = None if canonical_uri(changed) == canonical_uri(raw_path) else "SignatureDoesNotMatch"
    assert _code("GET", changed, raw_query, headers) == expected


@given(data=st.data(), meta=META_HEADERS.filter(bool), presigned=st.booleans())
def test_a_changed_signed_header_is_refused(data, meta, presigned):
    raw_path, raw_query, headers = (sign_query if presigned else sign_header)("PUT", "/bucket/k", headers=meta)
    name = data.draw(st.sampled_from(sorted(meta) + ["host"]))
    value = headers[name]
    changed = _change_one_char(data, value, PATH_CHARS + "\t")
    headers[name] = changed
    same = " ".join(changed.split()) == " ".join(value.split())
    assert _code("PUT", raw_path, raw_query, headers) == (None if same else "SignatureDoesNotMatch")


# -- canonicalisation agrees with botocore's ----------------------------------------------------------


@given(key=KEYS)
def test_canonical_uri_is_what_botocore_signs(key):
    path = _path(key)
    assert canonical_uri(path) == S3SigV4Auth._normalize_url_path(None, path)


@given(params=st.lists(st.tuples(PARAM_NAMES, st.text(CLEAN, max_size=12)), max_size=5))
def test_canonical_query_is_what_botocore_signs(params):
    # botocore signs the parameters with %20 and sends them form-encoded ("+" for a space).
    botocore = S3SigV4Auth._canonical_query_string_params(None, params)
    assert canonical_query(_query_pairs(urlencode(params))) == botocore
    assert canonical_query([(n.encode(), v.encode()) for n, v in params]) == botocore
