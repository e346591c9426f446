"""The control calls of each service, declared once (name, argument type, result type).

One module per service: :mod:`.node`, :mod:`.engine`, :mod:`.replica`. The servers dispatch
from these tables (:class:`lhtrio.wire.control.Dispatcher`) and the typed clients
(:mod:`lhtrio.clients`) call through them, so both sides read the same declaration.
"""
