"""The sandbox's network proxy (devops/sandbox/network.py) against a plain echo server: no sandbox needed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from devops.config import REPO_ROOT
from devops.sandbox.network import Network
from devops.sandbox.processes import free_port, port_open, wait_for


@pytest.fixture
def echo():
    """An echo server on 127.0.0.1; ``stop()`` closes it and every connection it holds (a server dying)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for data in iter(lambda: conn.recv(65536), b""):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # the client's end: the server's too

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def stop() -> None:
        server.close()
        for conn in held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    yield server.getsockname()[1], stop
    stop()


@pytest.fixture
def proxied(echo):
    upstream, stop = echo
    control, listen = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "devops.sandbox.network", "--control", str(control),
                                "--route", f"echo:{listen}:{upstream}", "--rtt-ms", "40"], cwd=REPO_ROOT)
    wait_for(lambda: port_open(control), 10, "the proxy")
    yield Network(control), listen, stop
    process.terminate()
    process.wait()


def test_each_round_trip_takes_the_rtt_and_is_counted(proxied):
    network, port, _ = proxied
    with socket.create_connection(("127.0.0.1", port)) as conn:
        started = time.monotonic()
        for _ in range(5):
            conn.sendall(b"ping")
            assert conn.recv(100) == b"ping"
        took = time.monotonic() - started
    assert 0.2 + 0.04 <= took < 0.2 + 0.3, took  # and TCP's handshake
    wait_for(lambda: network.counts()["echo"].open == 0, 5, "the connection's end")
    counts = network.counts()["echo"]
    assert (counts.connections, counts.round_trips, counts.bytes_up, counts.bytes_down) == (1, 1 + 5, 20, 20)
    assert counts.setup_round_trips == 1  # TCP's only: a route not marked tls
    network.reset()
    network.set_rtt(0)
    assert network.stats()["rtt_ms"] == 0 and network.counts()["echo"].round_trips == 0


def test_a_route_whose_upstream_lacks_tls_charges_its_handshake(echo):
    """The emulator speaks HTTP where AWS speaks HTTPS: a new connection costs TCP's round trip and TLS's."""
    upstream, _ = echo
    control, listen = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "devops.sandbox.network", "--control", str(control),
                                "--route", f"aws:{listen}:{upstream}:tls", "--rtt-ms", "100"], cwd=REPO_ROOT)
    try:
        wait_for(lambda: port_open(control), 10, "the proxy")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", listen)) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"ping"
        took = time.monotonic() - started
        network = Network(control)
        wait_for(lambda: network.counts()["aws"].open == 0, 5, "the connection's end")
        counts = network.counts()["aws"]
    finally:
        process.terminate()
        process.wait()
    assert 0.3 <= took < 0.3 + 0.25, took  # the set-up's two round trips, then the ping's
    assert (counts.connections, counts.setup_round_trips, counts.round_trips) == (1, 2, 3)


def test_a_server_that_dies_resets_its_clients_at_once(proxied):
    """As on a real network: the client's next writes fail (not only its read at the end)."""
    network, port, stop = proxied
    network.set_rtt(0)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"x")
        assert conn.recv(10) == b"x"
        stop()
        with pytest.raises(OSError):
            for _ in range(1000):  # writes go on until the reset arrives
                conn.sendall(b"y" * 65536)
                time.sleep(0.001)


def test_an_answer_sent_before_a_reset_arrives_before_it():
    """A server that answers and closes with bytes unread sends a reset (as werkzeug may after an answer):
    the answer was on the wire first, so the client reads it; then the reset."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer_and_reset() -> None:
        conn, _ = server.accept()
        conn.recv(3)  # "ask", and leaves the rest unread
        time.sleep(0.1)  # the rest has come
        conn.sendall(b"answer")
        conn.close()  # with unread bytes: a reset, right behind the answer

    threading.Thread(target=answer_and_reset, daemon=True).start()
    control, listen = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "devops.sandbox.network", "--control", str(control),
                                "--route", f"one:{listen}:{server.getsockname()[1]}", "--rtt-ms", "40"],
                               cwd=REPO_ROOT)
    try:
        wait_for(lambda: port_open(control), 10, "the proxy")
        with socket.create_connection(("127.0.0.1", listen)) as conn:
            conn.sendall(b"ask and more")
            received = b""
            with contextlib.suppress(ConnectionResetError):
                for data in iter(lambda: conn.recv(100), b""):
                    received += data
        assert received == b"answer"
    finally:
        process.terminate()
        process.wait()
        server.close()
