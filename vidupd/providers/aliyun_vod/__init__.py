"""Alibaba Cloud VOD: CreateUploadVideo / RefreshUploadVideo (and the image and attached-
media calls), the OSS upload through providers.oss, pull-from-URL jobs, registration of
media already on OSS, and the media status calls.

`rpc` signs and sends the RPC calls and decodes the upload address and STS credentials;
`media` holds the pure rules (typed settings, request parameters from metadata, URL lists,
URL-pull job states); `pull` submits URL
pulls and follows them; `provider` runs an upload end to end (create, OSS multipart with
credentials renewed through RefreshUploadVideo, cover, resume from the checkpoint).
"""
