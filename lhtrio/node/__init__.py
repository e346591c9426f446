"""``lhtrio node``: one trio process per Kubernetes node, supervising engine and replica instances.

See :mod:`lhtrio.node.server` for the whole picture.
"""
