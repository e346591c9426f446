"""Where desired state lives: one store interface (:mod:`.api`), its rules (:mod:`.rules`), and
its backends: in memory (:mod:`.memory`, for tests and a single process), one SQLite file shared
by the node processes of a host (:mod:`.sqlite`, the default), and etcd, shared by nodes on any
number of hosts (:mod:`.etcd`); :mod:`.open` picks one from a ``--store`` URL."""
