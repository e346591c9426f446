"""The API's bearer token: read from a file the operator gives, or the node's own.

Without ``--api-token-file`` a node keeps its token in ``DATA_DIR/api-token`` (mode 0600): made
on the first start (32 random bytes, URL-safe base64) and read on every later one, so clients
keep working across restarts. The file is written whole under a temporary name, synced, then
linked to its name: a crash never leaves an empty or partial token, and two starts racing on
one directory end with the same token (the second link fails and reads the first one's).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from typing import Final

from lhtrio.errors import InvalidArgumentError

__all__ = ["TOKEN_FILE", "node_token", "read_token"]

logger = logging.getLogger(__name__)

#: The node's token file, in its data directory.
TOKEN_FILE: Final = "api-token"
#: The longest token file read (a token is one line of printable ASCII).
MAX_TOKEN: Final = 4096


def read_token(path: str) -> str:
    """The token in ``path``: its one line of printable ASCII, surrounding whitespace removed.

    InvalidArgumentError if the file cannot be read, is empty, too long or not such a line.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TOKEN + 1)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read the API token file {path}: {exc}") from None
    text = data.strip()
    if not text:
        raise InvalidArgumentError(f"the API token file {path} is empty: write a token in it")
    if len(data) > MAX_TOKEN or not all(0x21 <= b <= 0x7E for b in text):
        raise InvalidArgumentError(
            f"the API token file {path} does not hold a token: one line of printable ASCII "
            f"without spaces, at most {MAX_TOKEN} bytes"
        )
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the API token file %s can be read by others (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return text.decode("ascii")


def node_token(data_dir: str) -> str:
    """The token of the node keeping ``data_dir``: ``DATA_DIR/api-token``, made if missing."""
    path = os.path.join(data_dir, TOKEN_FILE)
    if os.path.lexists(path):
        return read_token(path)
    token = secrets.token_urlsafe(32)
    temporary = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, f"{token}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return read_token(path)  # another start made it first: use that one
    finally:
        os.unlink(temporary)
    dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    logger.info("made the API token %s", path)
    return token
