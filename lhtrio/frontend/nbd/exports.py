"""What an NBD export is to a client, and what a finished handshake agreed on.

Both are frozen attrs values: the handshake reads :class:`ExportInfo` from the server's
``lookup`` callable and produces a :class:`Transmission`, which the request decoder and the
server's reply path run with.
"""

from __future__ import annotations

import attrs

from lhtrio.frontend.nbd.constants import MAX_STRING, TransmissionFlag

__all__ = ["ExportInfo", "Transmission", "transmission_flags"]


def _check_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if len(value.encode("utf-8")) > MAX_STRING:
        raise ValueError(f"export {attribute.name} is longer than {MAX_STRING} bytes")


@attrs.frozen(kw_only=True)
class ExportInfo:
    """What the handshake tells a client about one export, and which commands it accepts.

    ``can_*`` say what the backend really supports; each one becomes a transmission flag, and
    the request decoder refuses commands and flags that were not advertised.
    """

    name: str = attrs.field(validator=_check_name)
    size: int = attrs.field(validator=[attrs.validators.ge(0), attrs.validators.lt(1 << 63)])
    description: str = attrs.field(default="", validator=_check_name)
    read_only: bool = False
    can_multi_conn: bool = False
    can_flush: bool = True
    can_fua: bool = True
    can_trim: bool = True
    can_zero: bool = True
    #: ``NBD_CMD_FLAG_FAST_ZERO`` on WRITE_ZEROES (only with ``can_zero``).
    can_fast_zero: bool = False
    #: ``NBD_CMD_CACHE``.
    can_cache: bool = False


def transmission_flags(export: ExportInfo, *, structured_replies: bool) -> int:
    """The u16 transmission flags for ``export`` (as sent with EXPORT_NAME, INFO and GO)."""
    flags = TransmissionFlag.HAS_FLAGS
    if export.read_only:
        flags |= TransmissionFlag.READ_ONLY
    if export.can_flush:
        flags |= TransmissionFlag.SEND_FLUSH
    if export.can_fua:
        flags |= TransmissionFlag.SEND_FUA
    if export.can_trim and not export.read_only:
        flags |= TransmissionFlag.SEND_TRIM
    if export.can_zero and not export.read_only:
        flags |= TransmissionFlag.SEND_WRITE_ZEROES
        if export.can_fast_zero:
            flags |= TransmissionFlag.SEND_FAST_ZERO
    if export.can_cache:
        flags |= TransmissionFlag.SEND_CACHE
    if structured_replies:
        flags |= TransmissionFlag.SEND_DF
    if export.can_multi_conn:
        flags |= TransmissionFlag.CAN_MULTI_CONN
    return int(flags)


@attrs.frozen(kw_only=True)
class Transmission:
    """The outcome of a successful handshake: what the transmission phase runs with."""

    export: ExportInfo
    #: The transmission flags the client was sent.
    flags: int
    structured_replies: bool
    #: The context id of ``base:allocation`` if the client selected it, else None.
    meta_context: int | None
    no_zeroes: bool
