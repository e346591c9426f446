"""Frontends: how clients reach a volume's block I/O (NBD, in :mod:`lhtrio.frontend.nbd`)."""

from __future__ import annotations
