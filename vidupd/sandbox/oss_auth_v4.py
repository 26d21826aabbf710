"""OSS V4 signatures (OSS4-HMAC-SHA256) and the choice between V1 and V4 per sandbox.

Alibaba Cloud stopped offering V1 to new accounts on 2025-03-01 (PROTOCOLS.md section 3);
`--oss-signature v4` (the default) is what such an account sees, `both` an older account,
`v1` a gateway that knows V1 only. The V4 signature is recomputed here from the request as
received, never with oss2, following the official "Include a V4 signature in the
Authorization header" page and the two public signers (oss2's ProviderAuthV4,
alibabacloud_oss_v2's SignerV4):

    Authorization: OSS4-HMAC-SHA256 Credential=AK/YYYYMMDD/REGION/oss/aliyun_v4_request[,
                   AdditionalHeaders=a;b], Signature=HEX      (", " or "," between fields)
    CanonicalRequest = VERB \n URI \n QUERY \n HEADERS \n ADDITIONAL \n x-oss-content-sha256
      URI      /bucket/key, percent-encoded except A-Za-z0-9 -_.~ and "/"
      QUERY    every parameter, key and value encoded the same way ("/" too), sorted by
               key; "k=v", or "k" for an empty value
      HEADERS  "name:value\\n" for every x-oss-*, content-type, content-md5 and additional
               header, names lower-case, sorted
    StringToSign = "OSS4-HMAC-SHA256" \n x-oss-date \n DATE/REGION/oss/aliyun_v4_request \n hex(SHA-256(CR))
    SigningKey = HMAC-SHA256 chain from "aliyun_v4" + secret over DATE, REGION, "oss", "aliyun_v4_request"

The region must be the bucket's: a signature scoped to another region is refused as OSS
refuses it (EC 0002-00000228), whether or not the HMAC matches.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from typing import Mapping

from .oss_auth import MAX_CLOCK_SKEW, StsCredential, StsStore, check_credential, verify_request
from .oss_xml import OssError

SIGNATURE_MODES = ("v4", "v1", "both")
ALGORITHM = "OSS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_TERMINATOR = "aliyun_v4_request"
_PRODUCT = "oss"
_DEFAULT_SIGNED = ("content-type", "content-md5")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def uri_encode(text: str, keep_slash: bool) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes (upper-case hex), as both SDKs do."""
    out = []
    for b in text.encode("utf-8"):
        out.append(chr(b) if b in _UNRESERVED or (keep_slash and b == 0x2F) else f"%{b:02X}")
    return "".join(out)


def _wire_text(value: str) -> str:
    """http.server decodes header bytes as Latin-1; clients sign the UTF-8 text."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def canonical_request(method: str, bucket: str, key: str, params: Mapping[str, str],
                      headers: Mapping[str, str], additional: list[str]) -> str:
    uri = "/" + (f"{bucket}/{key}" if bucket else "")
    pairs = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in params.items())
    query = "&".join(f"{k}={v}" if v else k for k, v in pairs)
    extra = set(additional)
    signed = sorted((k.lower(), _wire_text(v.strip())) for k, v in headers.items()
                    if k.lower().startswith("x-oss-") or k.lower() in _DEFAULT_SIGNED or k.lower() in extra)
    lines = "".join(f"{k}:{v}\n" for k, v in signed)
    payload = headers.get("x-oss-content-sha256", UNSIGNED_PAYLOAD)
    return f"{method}\n{uri_encode(uri, True)}\n{query}\n{lines}\n{';'.join(additional)}\n{payload}"


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def signing_key(secret: str, date: str, region: str, product: str = _PRODUCT) -> bytes:
    key = ("aliyun_v4" + secret).encode("utf-8")
    for part in (date, region, product, _TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def sign(secret: str, date: str, region: str, text: str) -> str:
    return hmac.new(signing_key(secret, date, region), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _invalid(message: str, ec: str = "") -> OssError:
    """400 InvalidArgument; `ec` only where the documentation names the EC of the case."""
    return OssError(400, "InvalidArgument", message, **({"EC": ec} if ec else {}))


def parse_authorization(value: str) -> tuple[str, list[str], list[str], str]:
    """(access key id, scope parts [date, region, product, terminator], additional header
    names, signature) of a V4 Authorization header; InvalidArgument when malformed."""
    _, _, rest = value.partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if not sep or name in fields:
            raise _invalid("Authorization header is invalid.", "0002-00000209")
        fields[name] = val.strip()
    if set(fields) - {"Credential", "AdditionalHeaders", "Signature"} or not fields.get("Signature"):
        raise _invalid("Authorization header is invalid.", "0002-00000209")
    if "AdditionalHeaders" in fields and not fields["AdditionalHeaders"]:
        raise _invalid("AdditionalHeaders in the Authorization header is empty.", "0002-00000209")
    parts = fields.get("Credential", "").split("/")
    if len(parts) != 5 or not parts[0] or parts[3] != _PRODUCT or parts[4] != _TERMINATOR:
        raise _invalid("The Credential in the Authorization header is invalid.", "0002-00000213")
    additional = [h for h in fields.get("AdditionalHeaders", "").lower().split(";") if h]
    return parts[0], parts[1:], sorted(set(additional)), fields["Signature"]


def _parse_timestamp(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except (TypeError, ValueError):
        raise _invalid(f"x-oss-date {text!r} is not in the form YYYYMMDDThhmmssZ.") from None


def verify_v4(store: StsStore, method: str, headers: Mapping[str, str], bucket: str, key: str,
              params: Mapping[str, str], region: str, now: float | None = None) -> StsCredential:
    """Check a V4 Authorization header; raise the OSS error the real service would give."""
    now = time.time() if now is None else now
    ak, (date, scope_region, product, terminator), additional, signature = parse_authorization(
        headers.get("Authorization", ""))
    timestamp = headers.get("x-oss-date", "")
    if not timestamp:
        raise _invalid("A V4 signed request needs the x-oss-date header.")
    sent = _parse_timestamp(timestamp)
    if date != timestamp[:8]:
        raise _invalid("The date in the Credential does not match x-oss-date.")
    if scope_region != region:
        raise _invalid(f"Invalid signing region in Authorization header: {scope_region!r} is not the bucket's "
                       "region.", "0002-00000228")
    payload = headers.get("x-oss-content-sha256")
    if payload is None:
        raise _invalid("A V4 signed request needs the x-oss-content-sha256 header.")
    if payload != UNSIGNED_PAYLOAD:  # the only value the documentation offers for header signatures
        raise _invalid("x-oss-content-sha256 must be UNSIGNED-PAYLOAD.")
    cred = check_credential(store, ak, headers, now)
    if abs(now - sent) > MAX_CLOCK_SKEW:
        raise OssError(403, "RequestTimeTooSkewed",
                       "The difference between the request time and the current time is too large.")
    canonical = canonical_request(method, bucket, key, params, headers, additional)
    text = string_to_sign(timestamp, f"{date}/{scope_region}/{product}/{terminator}", canonical)
    if not hmac.compare_digest(sign(cred.access_key_secret, date, scope_region, text), signature):
        raise OssError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                       "signature you provided. Check your key and signing method.",
                       OSSAccessKeyId=ak, CanonicalRequest=canonical, StringToSign=text)
    return cred


def signature_version(headers: Mapping[str, str]) -> str:
    """"v4", "v1" or "" (no or an unknown Authorization scheme) for a request's headers."""
    scheme = headers.get("Authorization", "").partition(" ")[0]
    return {ALGORITHM: "v4", "OSS": "v1"}.get(scheme, "")


def authenticate(store: StsStore, mode: str, method: str, headers: Mapping[str, str], bucket: str, key: str,
                 params: Mapping[str, str], resource: str, region: str) -> tuple[StsCredential, str]:
    """Verify the request's signature as a sandbox in `mode` ("v4", "v1", "both") does;
    returns the credentials and the version ("v4"/"v1") the request was signed with."""
    version = signature_version(headers)
    if version == "v4" and mode in ("v4", "both"):
        return verify_v4(store, method, headers, bucket, key, params, region), "v4"
    if version == "v1" and mode == "v4":
        # What OSS answers a V1 request from an account that may only use V4 is not documented
        # (the upgrade guide only says V1 is "no longer available"); the closest documented
        # refusal of a request OSS will not authenticate is 403 AccessDenied, used here.
        raise OssError(403, "AccessDenied", "V1 signatures are not available to this account; sign the request "
                       "with V4 (OSS4-HMAC-SHA256).")
    if version == "v4":  # mode v1: a gateway that only knows V1 (as private OSS gateways answer V4)
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.")
    return verify_request(store, method, headers, resource), "v1"
