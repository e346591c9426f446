"""``lhtrio status``: whether the node serving the admin API is alive (``/healthz``) and ready
(``/readyz``: its store answers and it supervises its instances; ``docs/api.md``).

Exit code 0 when ready, 1 when the API answers but is not ready (the reason is printed), 5 when
it cannot be reached. ``-o json`` prints ``{"api": URL, "ready": bool, "healthz": {"status",
"message"}, "readyz": {"status", "message"}}``.
"""

from __future__ import annotations

import click

from lhtrio.admin.client import Exit, admin_client
from lhtrio.admin.documents import Document
from lhtrio.admin.groups import ApiCommand, json_option
from lhtrio.output import show

__all__ = ["status"]


def _render(result: Document) -> str:
    live, ready = result["healthz"], result["readyz"]
    alive = "alive" if live["status"] == 200 else f"not alive ({live['status']}: {live['message']})"
    state = "ready" if result["ready"] else f"not ready ({ready['status']}: {ready['message']})"
    return f"admin API {result['api']}: {alive}, {state}"


@click.command("status", cls=ApiCommand)
@json_option
def status(output: str) -> None:
    """Is the admin API's node alive and ready? (/healthz, /readyz; exit 1 if not ready)."""
    api = admin_client()
    live, ready = api.probe("/healthz"), api.probe("/readyz")
    result: Document = {
        "api": api.url,
        "ready": live[0] == 200 and ready[0] == 200,
        "healthz": {"status": live[0], "message": live[1]},
        "readyz": {"status": ready[0], "message": ready[1]},
    }
    show(output, result, _render)
    if not result["ready"]:
        click.get_current_context().exit(Exit.ERROR)
