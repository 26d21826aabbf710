"""The one OSS client of vidupd: multipart upload with CRC-64 checks and STS renewal.

Alibaba Cloud VOD hands out an OSS address and temporary (STS) credentials for every media
object (`providers/aliyun_vod`); Youku's OSS-based upload does the same through
uploads/get_sts_inf.json. Both send the bytes with this package, which knows OSS and
nothing of either platform:

- `signing`: the one place an oss2 auth and Bucket are built: V4 (the default; scoped to the
  bucket's region) or V1 for old set-ups;
- `credentials`: the STS value (`StsCredentials`) and the keeper that holds the live
  oss2.Bucket and renews the credentials once for all part threads, through a callback
  the platform supplies (VOD adapts RefreshUploadVideo to it, Youku get_sts_inf.json);
- `multipart`: PutObject for small files, else initiate, parts streamed from disk through
  the transfer engine, ListParts-based resume, Complete checked against the CRC-64 the
  parts combine to (HeadObject when Complete's answer was lost, in the same run or after a
  restart); the checkpoint values;
- `abort`: AbortMultipartUpload for an upload given up for good;
- `errors`: oss2/requests errors translated into vidupd's own.
CRC-64/XZ (x-oss-hash-crc64ecma) of data and of concatenated parts is `vidupd.core.crc64`.
"""
