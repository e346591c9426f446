"""The NBD frontend: :mod:`.proto` is the sans-I/O protocol core, :mod:`.device` what it needs
from a volume, :mod:`.connection` one connection's handshake, transmission and drain, and
:mod:`.server` the listener, the exports it offers and their orderly stop."""

from __future__ import annotations
