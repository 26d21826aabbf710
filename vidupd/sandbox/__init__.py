"""Server side of the Youku and Alibaba Cloud VOD/OSS protocols, on 127.0.0.1.

The sandbox never imports vidupd client code (providers, ledger, pool, ...), so a test
that passes against it shows the client speaks the protocol, not that both share a bug.
"""
