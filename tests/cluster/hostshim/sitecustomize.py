"""Test shim for processes that play "another machine" (tests/cluster): with
``YADTQ_TEST_SOURCE_ADDRESS=127.0.0.2`` every IPv4 TCP connection this process opens to a loopback
address leaves from 127.0.0.2, and with ``YADTQ_TEST_HOSTNAME`` ``socket.gethostname()`` says that
name. Brokers and Redis then see the process's connections coming from that address (Kafka's
group description, Redis's ``CLIENT LIST``). Loaded through ``PYTHONPATH`` by the tests only."""

import os
import socket

_SOURCE = os.environ.get("YADTQ_TEST_SOURCE_ADDRESS")
_HOSTNAME = os.environ.get("YADTQ_TEST_HOSTNAME")

if _SOURCE:
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def _bind(sock: socket.socket, address: object) -> None:
        if (sock.family == socket.AF_INET and sock.type & socket.SOCK_STREAM
                and isinstance(address, tuple) and str(address[0]).startswith("127.")):
            try:
                sock.bind((_SOURCE, 0))
            except OSError:
                pass  # already bound (a retry on the same socket)

    def _patched_connect(self: socket.socket, address: object) -> None:
        _bind(self, address)
        _connect(self, address)  # type: ignore[arg-type]

    def _patched_connect_ex(self: socket.socket, address: object) -> int:
        _bind(self, address)
        return _connect_ex(self, address)  # type: ignore[arg-type]

    socket.socket.connect = _patched_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _patched_connect_ex  # type: ignore[method-assign,assignment]

if _HOSTNAME:
    _NAME: str = _HOSTNAME
    socket.gethostname = lambda: _NAME
