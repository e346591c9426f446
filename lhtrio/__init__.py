"""lhtrio: distributed block storage for Kubernetes on trio's structured concurrency."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
