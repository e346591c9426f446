"""The operator's commands over the admin HTTP API: ``lhtrio volume``, ``snapshot``, ``node ls``,
``node get`` and ``setting`` (``docs/cli.md``).

They talk HTTP only (:mod:`lhtrio.admin.client`, httpx): nothing here imports the API's server
(:mod:`lhtrio.api`, quart). ``lhtrio.cli`` registers the groups and gives the root command
:func:`api_options`.
"""

from lhtrio.admin.client import api_options, install
from lhtrio.admin.nodes import node_group
from lhtrio.admin.settings import setting
from lhtrio.admin.snapshots import snapshot
from lhtrio.admin.volumes import volume

__all__ = ["api_options", "install", "node_group", "setting", "snapshot", "volume"]
