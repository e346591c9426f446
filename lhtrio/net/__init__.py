"""The trio shell of protocol v1: an RPC server and a pipelining, coalescing RPC client."""

from __future__ import annotations

from lhtrio.net.address import Address, parse_address
from lhtrio.net.client import ClientStatistics, RpcClient, connect_rpc, open_rpc_client
from lhtrio.net.server import Handler, serve_rpc, serve_rpc_at, serve_rpc_connection

__all__ = [
    "Address",
    "ClientStatistics",
    "Handler",
    "RpcClient",
    "connect_rpc",
    "open_rpc_client",
    "parse_address",
    "serve_rpc",
    "serve_rpc_at",
    "serve_rpc_connection",
]
