"""The operator's commands over the admin HTTP API: ``lhtrio volume``, ``snapshot``, ``engine``,
``replica``, ``attachment``, ``event``, ``node ls|get``, ``setting`` and ``status``
(``docs/cli.md``).

They talk HTTP only (:mod:`lhtrio.admin.client`, httpx): nothing here imports the API's server
(:mod:`lhtrio.api`, quart). ``lhtrio.cli`` registers the groups and gives the root command
:func:`api_options`.
"""

from lhtrio.admin import volume_actions as _volume_actions  # registers its verbs on `volume`
from lhtrio.admin.client import api_options, install
from lhtrio.admin.health import status
from lhtrio.admin.members import attachment, engine_group, event, replica_group
from lhtrio.admin.nodes import node_group
from lhtrio.admin.settings import setting
from lhtrio.admin.snapshots import snapshot
from lhtrio.admin.volumes import volume

__all__ = [
    "api_options",
    "attachment",
    "engine_group",
    "event",
    "install",
    "node_group",
    "replica_group",
    "setting",
    "snapshot",
    "status",
    "volume",
]

del _volume_actions
