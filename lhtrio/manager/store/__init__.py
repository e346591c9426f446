"""Where desired state lives: one store interface (:mod:`.api`), its rules (:mod:`.rules`), and
its backends: in memory (:mod:`.memory`, for tests and a single process) and one SQLite file
shared by the node processes of a host (:mod:`.sqlite`, the default)."""
