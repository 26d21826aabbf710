"""OSS wire types: the error exception and the XML bodies, without namespaces
(oss2's parsers look tags up by bare name, as the real service sends them)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable


class OssError(Exception):
    """An OSS error answer: HTTP status, Code, Message and optional extra elements."""

    def __init__(self, status: int, code: str, message: str, **extra: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def _element(tag: str, children: Iterable[tuple[str, object]]) -> ET.Element:
    root = ET.Element(tag)
    for name, value in children:
        ET.SubElement(root, name).text = str(value)
    return root


def _dump(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def error_xml(err: OssError, request_id: str, host_id: str) -> bytes:
    fields = [("Code", err.code), ("Message", err.message), ("RequestId", request_id), ("HostId", host_id)]
    fields += sorted(err.extra.items())
    return _dump(_element("Error", fields))


def iso8601(t: float) -> str:
    """OSS's XML time format, milliseconds always .000: 2012-02-24T06:07:48.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def init_upload_xml(bucket: str, key: str, upload_id: str) -> bytes:
    return _dump(_element("InitiateMultipartUploadResult", [("Bucket", bucket), ("Key", key), ("UploadId", upload_id)]))


def complete_xml(location: str, bucket: str, key: str, etag: str) -> bytes:
    return _dump(
        _element(
            "CompleteMultipartUploadResult",
            [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", f'"{etag}"')],
        )
    )


@dataclass(frozen=True)
class PartRow:
    """One <Part> of a ListParts page."""

    number: int
    etag: str
    size: int
    crc64: int
    last_modified: float


def list_parts_xml(
    bucket: str, key: str, upload_id: str, marker: int, max_parts: int, parts: list[PartRow], truncated: bool
) -> bytes:
    root = _element(
        "ListPartsResult",
        [
            ("Bucket", bucket),
            ("Key", key),
            ("UploadId", upload_id),
            ("PartNumberMarker", marker),
            ("NextPartNumberMarker", parts[-1].number if parts else marker),
            ("MaxParts", max_parts),
            ("IsTruncated", "true" if truncated else "false"),
        ],
    )
    for p in parts:
        node = ET.SubElement(root, "Part")
        for name, value in (
            ("PartNumber", p.number),
            ("LastModified", iso8601(p.last_modified)),
            ("ETag", f'"{p.etag}"'),
            ("HashCrc64ecma", p.crc64),
            ("Size", p.size),
        ):
            ET.SubElement(node, name).text = str(value)
    return _dump(root)


def bucket_info_xml(bucket: str, created: float, endpoint_host: str, region: str) -> bytes:
    root = ET.Element("BucketInfo")
    node = ET.SubElement(root, "Bucket")
    for name, value in (
        ("Name", bucket),
        ("Location", f"oss-{region}"),
        ("CreationDate", iso8601(created)),
        ("ExtranetEndpoint", endpoint_host),
        ("IntranetEndpoint", endpoint_host),
        ("StorageClass", "Standard"),
        ("DataRedundancyType", "LRS"),
    ):
        ET.SubElement(node, name).text = value
    owner = ET.SubElement(node, "Owner")
    ET.SubElement(owner, "ID").text = "sandbox"
    ET.SubElement(owner, "DisplayName").text = "sandbox"
    acl = ET.SubElement(node, "AccessControlList")
    ET.SubElement(acl, "Grant").text = "private"
    return _dump(root)


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(PartNumber, ETag without quotes) in the order the client listed them."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise OssError(400, "MalformedXML", f"The XML you provided was not well-formed: {e}") from None
    if root.tag != "CompleteMultipartUpload":
        raise OssError(400, "MalformedXML", "root element must be CompleteMultipartUpload")
    parts = []
    for node in root.findall("Part"):
        number, etag = node.findtext("PartNumber"), node.findtext("ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise OssError(400, "MalformedXML", "each Part needs a numeric PartNumber and an ETag")
        parts.append((int(number), etag.strip().strip('"')))
    if not parts:
        raise OssError(400, "MalformedXML", "the part list is empty")
    return parts
