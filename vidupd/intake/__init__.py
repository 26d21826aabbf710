"""From a watched folder to jobs in the ledger: the watcher and what decides about a file.

`watcher` notices files (inotify or polling, a start-up scan and periodic rescans) and waits
until each has stopped changing for `settle_seconds`; `offers` turns a settled file into one
job per target in one ledger transaction (a rename is recognised, a bad file is one file's
problem); `sidecar` reads the title and other metadata from `NAME.ext.json`; `companions`
pairs a video with its same-stem cover image. Nothing here uploads or writes into a watched
folder.
"""
