"""Running jobs: the worker pool between the ledger and the providers.

`pool` claims a bounded window of jobs with a lease (a generation number every write
carries), runs each in three steps, and emits the event each ledger transition returns:
`prepare` (is the file still the version queued; read it for its content first only when
the provider needs an MD5 or a twin is possible; the duplicate check), the provider's upload
(the transfer itself lives in providers/: the chunk engine and the OSS package), and
`Ledger.apply` of the outcome. `poll` asks the platform whether committed media is ready;
`progress` paces progress records and events; `after_upload` keeps, deletes or moves the
file once every target has it.
"""
