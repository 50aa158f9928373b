"""S3 XML in and out: build documents from nested pairs, parse request bodies safely.

Documents are built from ``XmlChildren`` or, on hot paths, from ``Fragment`` strings already
rendered; a request body is parsed with no DTD and no entities, into elements named by local name.

Keys may hold any character, but XML 1.0 cannot carry most C0 control characters, and CR
and LF would be normalised away by the client's parser. AWS writes every C0 control
character as a numeric reference (``&#xA;``, ``&#xD;``, ``&#x1;``); we do the same, so a
client sees what S3 would send (strict parsers reject ``&#x1;`` on S3 too; such clients
list with ``encoding-type=url``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import NoReturn, Union
from xml.parsers import expat

from ..awsv4 import S3_NAMESPACE
from ..errors import S3Error

__all__ = [
    "Fragment",
    "MAX_XML_SIZE",
    "XmlChildren",
    "child_text",
    "escape_text",
    "parse_items",
    "parse_xml",
    "render",
    "to_xml",
]

# Request bodies we parse: CompleteMultipartUpload with 10,000 parts and checksums, or
# DeleteObjects with 1,000 keys of 1,024 bytes each, both fit with room to spare.
MAX_XML_SIZE = 4 * 1024 * 1024

# A value is ``str`` (text), ``int``, ``bool`` (``true``/``false``), ``None`` (element left out), a
# nested ``XmlChildren`` or a ``Fragment`` (the element's content, as is).
XmlValue = Union[str, int, bool, None, "Fragment", "XmlChildren"]
# ``(name, value)`` pairs; repeated elements are simply repeated pairs. An item may also be a bare
# ``Fragment``: elements inserted as they are.
XmlChildren = list[Union[tuple[str, XmlValue], "Fragment"]]

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_ESCAPES.update({chr(c): f"&#x{c:X};" for c in range(0x20)})
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
# Most text (keys, ETags, dates) needs no escaping; one regex scan is cheaper than translate.
_NEEDS_ESCAPE = re.compile("[" + re.escape("".join(_ESCAPES)) + "]").search


class Fragment(str):
    """A ``str`` already rendered as XML (escaped, balanced): ``_render`` inserts it unescaped
    (inside its element, if paired). Hot paths (a listing's 1,000 ``Contents``) build one with
    f-strings instead of a nested ``XmlChildren`` per entry."""

    __slots__ = ()


def escape_text(text: str) -> str:
    """``text`` escaped the way S3 does it (see the module docstring)."""
    return text.translate(_ESCAPE_TABLE) if _NEEDS_ESCAPE(text) else text


def render(children: XmlChildren) -> Fragment:
    """``children`` rendered into one ``Fragment``, e.g. to reuse a constant sub-document."""
    out: list[str] = []
    _render(out, children)
    return Fragment("".join(out))


def _render(out: list[str], children: XmlChildren) -> None:
    for item in children:
        if isinstance(item, Fragment):
            out.append(item)
            continue
        name, value = item
        if value is None:
            continue
        if isinstance(value, Fragment):
            out.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, list):
            out.append(f"<{name}>")
            _render(out, value)
            out.append(f"</{name}>")
        elif isinstance(value, bool):
            out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
        elif isinstance(value, int):
            out.append(f"<{name}>{value}</{name}>")
        else:
            out.append(f"<{name}>{escape_text(value)}</{name}>")


def to_xml(root: str, content: XmlChildren | str, *, namespace: bool = True) -> bytes:
    """A whole document with the XML declaration; ``content`` is ``XmlChildren`` or the root's
    text, e.g. ``to_xml("ListAllMyBucketsResult", [("Owner", [("ID", "x")])])``. ``namespace``
    puts ``S3_NAMESPACE``, the namespace S3 puts on result documents, on the root."""
    xmlns = f' xmlns="{S3_NAMESPACE}"' if namespace else ""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<{root}{xmlns}>"]
    if isinstance(content, str):
        out.append(escape_text(content))
    else:
        _render(out, content)
    out.append(f"</{root}>")
    # surrogateescape round-trips header bytes that were not UTF-8 instead of failing here.
    return "".join(out).encode("utf-8", "surrogateescape")


def _local_name(tag: str) -> str:
    return tag.rsplit(":", 1)[-1]


class _TreeBuilder:
    """Builds an Element tree from expat events, refusing DTDs and entity declarations.

    expat is driven directly (rather than through ElementTree's parser) so that the handlers
    that reject a DOCTYPE are certain to be installed.
    """

    def __init__(self) -> None:
        self.root: ET.Element | None = None
        self._stack: list[ET.Element] = []
        self._text: list[str] = []

    def _flush_text(self) -> None:
        if not self._text or not self._stack:
            self._text.clear()
            return
        text = "".join(self._text)
        self._text.clear()
        node = self._stack[-1]
        if len(node):
            node[-1].tail = (node[-1].tail or "") + text
        else:
            node.text = (node.text or "") + text

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self._flush_text()
        element = ET.Element(_local_name(tag), attrs)
        if self._stack:
            self._stack[-1].append(element)
        else:
            self.root = element
        self._stack.append(element)

    def end(self, tag: str) -> None:
        self._flush_text()
        self._stack.pop()

    def data(self, text: str) -> None:
        self._text.append(text)


def _forbidden(*_args: object) -> NoReturn:
    raise ValueError("DTDs and entity declarations are not accepted")


def parse_xml(body: bytes, *, max_size: int = MAX_XML_SIZE) -> ET.Element:
    """A request body parsed with no DTD and no entities; element tags are *local names*
    (namespace and prefix stripped), so ``root.findall("Object")`` works whether or not the client
    sent ``xmlns``. Any problem, a body over ``max_size`` bytes included, is ``MalformedXML``."""
    if len(body) > max_size:
        raise S3Error("MalformedXML", "The XML you provided was larger than the maximum allowed size.")
    builder = _TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _forbidden
    parser.EntityDeclHandler = _forbidden
    parser.UnparsedEntityDeclHandler = _forbidden
    parser.ExternalEntityRefHandler = _forbidden
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, ValueError) as exc:
        raise S3Error("MalformedXML") from exc
    if builder.root is None:
        raise S3Error("MalformedXML")
    return builder.root


def parse_items(body: bytes, root: str, item: str, max_items: int) -> tuple[ET.Element, list[ET.Element]]:
    """A ``root`` document and its ``item`` children (DeleteObjects, CompleteMultipartUpload); a
    wrong root, no items or more than ``max_items`` is ``MalformedXML``."""
    document = parse_xml(body)
    if document.tag != root:
        raise S3Error("MalformedXML")
    items = document.findall(item)
    if not items or len(items) > max_items:
        raise S3Error("MalformedXML")
    return document, items


def child_text(element: ET.Element, name: str) -> str | None:
    """The text of the first child named ``name`` ("" when empty), or None when there is none."""
    child = element.find(name)
    if child is None:
        return None
    return child.text or ""
