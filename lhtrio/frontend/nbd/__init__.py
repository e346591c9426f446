"""The NBD frontend: the sans-I/O protocol core is :mod:`lhtrio.frontend.nbd.proto`."""

from __future__ import annotations
