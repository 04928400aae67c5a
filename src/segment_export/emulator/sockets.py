"""Listening sockets for the emulator's servers.

The product's web app has the same two helpers in ``segment_export.net``: the emulator imports
nothing of the product, so that it can be installed and run alone (like moto)."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port=0``: any free port), bound before the server starts so the
    caller knows the address first.

    Made with ``IPPROTO_TCP`` explicitly: asyncio sets TCP_NODELAY only on connections whose
    socket says so, and without it every small response waits ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
