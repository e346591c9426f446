"""The no-acknowledged-write-lost checker (docs/reliability.md).

:mod:`lhtrio.verify.model` is the pure register model (a history of writes and flushes, the
block stamps, the check); the workload drives a real device over NBD and feeds it.
"""
