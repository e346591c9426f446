"""Domain values shared by every part of lhtrio: names, labels, times (no trio, no I/O).

Whatever crosses a process boundary (a wire call, a command line, later the API and the store)
is checked here once, with the same rules and the same messages everywhere, so that nothing a
component accepted can be refused later by another (a replica directory that no longer opens
because a label or a time it was given cannot be read back).
"""

from __future__ import annotations
