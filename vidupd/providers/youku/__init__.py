"""Youku: the seed's six-step slice upload (create, create_file, new_slice, upload_slice,
check, commit) with its resume flow, the video status call, and OAuth tokens.

`api` is the wire protocol (requests, answers, error codes); `tokens` keeps the rotating
access/refresh pair in the ledger's shared store and refreshes it under its lock;
`provider` runs an upload: slices through the shared chunk engine (providers.transfer),
each streamed from the file (providers.part_body), resumed from the ledger checkpoint.
"""
