"""Instance supervision: a node's engines and replicas as trio tasks, and the control endpoint
(the instance-manager API) that creates, lists, watches and stops them.

:mod:`.supervisor` runs the instances; :mod:`.service` serves the calls of
:mod:`lhtrio.wire.calls.node`; :mod:`.disks`, :mod:`.ports` and :mod:`.logs` are what the
instances share. The node process that composes this with its listeners (and, later, the
manager and the admin API) is :mod:`lhtrio.node`.
"""
