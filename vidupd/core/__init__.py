"""The bottom layer: values and small tools every other layer uses, and nothing above.

The flow of vidupd is watcher -> ledger -> worker pool -> provider -> ledger -> event log,
and the folders are its layers (tests/test_layers.py enforces the order; a module imports
only from layers below its own):

    core < {ledger, providers} < config < intake < engine < service < cli

`core` holds what every layer shares: the values (`model`: FileIdentity, Metadata, the
shared-value store), errors (`errors`: the retry/permanent/cancel taxonomy the pool decides
by), the one file reader (`source`: throttled, identity-checked, cancellable) and the one
content hash pass (`content`, `crc64`), retries with backoff (`retry`), the shared rate
limit (`throttle`), atomic writes, secrets and their redaction, file-name handling
(`fsnames`, `safe_open`), state-dir modes and locks, path filters, and the event log
(`events`, `journal`), which any layer may write to.
"""
