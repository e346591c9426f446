"""``lhtrio node``: one trio process per Kubernetes node, composed in :mod:`lhtrio.node.server`.

The process's parts: the instance supervisor and its control endpoint (:mod:`lhtrio.instances`),
the node's one NBD listener, and (as they arrive) the manager and the admin API. This package
only composes them; see :mod:`lhtrio.node.server` for the whole picture.
"""
