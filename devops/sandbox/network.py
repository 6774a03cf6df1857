"""The sandbox's network: one proxy process in front of the Neon and RDS stand-ins and the AWS emulator that
adds a round-trip time of one's choosing and counts what crosses it.

On 127.0.0.1 a round trip costs nothing; from a laptop to Neon or AWS it costs 20-80 ms,
so what a task spends is its round trips times that. The proxy holds each chunk for half the round-trip time
in each direction (a wire with latency and no bandwidth limit), and counts per route:

- connections, and those still open;
- round trips: TCP's handshake (the proxy holds a new connection's first byte one round trip, as the
  handshake would), then each time the client sends after the server last spoke (or first); a query and
  its answer is one, a new PostgreSQL connection 4-5 (2-3 more with TLS), each batch of statements one.
  A count is stable where a time is not: tests assert counts;
- of those, the set-up's (``setup_round_trips``): TCP's, and on a route marked ``tls`` (the AWS emulator
  speaks plain HTTP where AWS speaks HTTPS only) TLS 1.3's handshake too, one round trip more that the
  proxy holds the first byte for. AWS keeps connections open between requests where the emulator closes
  each one: there the sandbox pays a set-up per request, the world one per connection;
- bytes each way.

It forwards bytes and never reads them: TLS goes through end to end. Run by the sandbox as
``python -m devops.sandbox.network --control PORT --route neon:LISTEN:UPSTREAM ... --route aws:LISTEN:UPSTREAM:tls
--rtt-ms N``; a small line protocol on the control port (``stats``, ``reset``, ``rtt MS``, ``route NAME PORT``)
is what ``Network`` speaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import socket
from typing import Any

HOST = "127.0.0.1"
CHUNK = 256 * 1024
QUEUED = 64  # chunks on the way in each direction: 16 MB, more than a fast link's bandwidth x delay


@dataclasses.dataclass
class Counts:
    connections: int = 0
    open: int = 0
    round_trips: int = 0
    setup_round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class Proxy:
    def __init__(self, routes: dict[str, tuple[int, int]], rtt_ms: float, tls: frozenset[str] = frozenset()):
        self.routes = routes  # name -> (listen port, upstream port)
        self.tls = tls  # the routes whose upstream speaks no TLS where the real service does
        self.rtt_ms = rtt_ms
        self.counts = {name: Counts() for name in routes}

    async def serve(self, control_port: int) -> None:
        servers = [await asyncio.start_server(self._control, HOST, control_port)]
        for name, (listen, _) in self.routes.items():
            servers.append(await asyncio.start_server(
                lambda r, w, name=name: self._connection(name, self.routes[name][1], r, w), HOST, listen))
        await asyncio.gather(*(server.serve_forever() for server in servers))

    async def _connection(self, name: str, upstream: int, client_r: asyncio.StreamReader,
                          client_w: asyncio.StreamWriter) -> None:
        # TCP's handshake, and TLS's where the upstream has none: round trips before the first byte goes.
        setup = 2 if name in self.tls else 1
        await asyncio.sleep(setup * self.rtt_ms / 1000)
        try:
            server_r, server_w = await asyncio.open_connection(HOST, upstream)
        except OSError:
            client_w.transport.abort()
            return
        for writer in (client_w, server_w):
            with contextlib.suppress(OSError):
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counts[name].connections += 1
        self.counts[name].open += 1
        self.counts[name].round_trips += setup
        self.counts[name].setup_round_trips += setup
        last = ["down"]  # who spoke last: a client's send after the server's answer is a new round trip

        def upward(size: int) -> None:  # self.counts[name]: a reset replaces it
            if last[0] == "down":
                self.counts[name].round_trips += 1
            last[0] = "up"
            self.counts[name].bytes_up += size

        def downward(size: int) -> None:
            last[0] = "down"
            self.counts[name].bytes_down += size

        pipes = [asyncio.ensure_future(self._pipe(client_r, server_w, upward)),
                 asyncio.ensure_future(self._pipe(server_r, client_w, downward))]
        try:
            done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            if any(not task.cancelled() and task.exception() for task in done):
                # One side broke (a server killed, a client gone): the other is reset, as a kernel resets a
                # connection whose peer is gone on its next write; its writes fail now, not at the end.
                for writer in (client_w, server_w):
                    writer.transport.abort()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self.counts[name].open -= 1
            for writer in (client_w, server_w):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Any) -> None:
        """Bytes from ``reader`` to ``writer``, each chunk delivered half a round trip after it arrived; at most
        QUEUED chunks on the way (a sender faster than the receiver waits, as TCP's window makes it). Raises
        when either end fails."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(maxsize=QUEUED)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:  # the sender broke: what it sent before is delivered, its reset follows
                    return
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while not delivering.done():
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    # Bytes sent before a reset are on the wire ahead of it and arrive first (an answer
                    # followed by a close with unread bytes): deliver what is queued, then fail.
                    marker = asyncio.ensure_future(queue.put((loop.time() + self.rtt_ms / 2000, None)))
                    await asyncio.wait([marker, delivering], return_when=asyncio.FIRST_COMPLETED)
                    await asyncio.wait([delivering])  # the queue delivered, or the receiver gone
                    marker.cancel()
                    raise
                if data:
                    seen(len(data))
                await queue.put((loop.time() + self.rtt_ms / 2000, data))
                if not data:
                    break
            await delivering
        finally:
            delivering.cancel()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            words = (await reader.readline()).decode().split()
            if words[:1] == ["reset"]:  # the connections open now stay counted as open
                self.counts = {name: Counts(open=counts.open) for name, counts in self.counts.items()}
            elif words[:1] == ["rtt"] and len(words) == 2:
                self.rtt_ms = float(words[1])
            elif words[:1] == ["route"] and len(words) == 3 and words[1] in self.routes:
                self.routes[words[1]] = (self.routes[words[1]][0], int(words[2]))
            reply = {"rtt_ms": self.rtt_ms, "routes": {name: {"port": self.routes[name][0],
                                                              "upstream": self.routes[name][1],
                                                              **dataclasses.asdict(counts)}
                                                       for name, counts in self.counts.items()}}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


class Network:
    """The control side, for the sandbox, the tests and the benches."""

    def __init__(self, control_port: int):
        self.control_port = control_port

    def _ask(self, command: str) -> dict[str, Any]:
        with socket.create_connection((HOST, self.control_port), timeout=5) as sock:
            sock.sendall(command.encode() + b"\n")
            reply = sock.makefile("rb").readline()
        return json.loads(reply)

    def stats(self) -> dict[str, Any]:
        """{"rtt_ms": N, "routes": {name: {"port", "connections", "open", "round_trips", "bytes_up", ...}}}."""
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def set_rtt(self, milliseconds: float) -> None:
        self._ask(f"rtt {milliseconds}")

    def route(self, name: str, upstream: int) -> None:
        """New connections of route ``name`` go to ``upstream`` (a test's server in a stand-in's place)."""
        self._ask(f"route {name} {upstream}")

    def counts(self) -> dict[str, Counts]:
        return {name: Counts(**{field.name: route[field.name] for field in dataclasses.fields(Counts)})
                for name, route in self.stats()["routes"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--route", action="append", default=[],
                        help="name:listen_port:upstream_port[:tls] (tls: the upstream speaks none, the world's does)")
    parser.add_argument("--rtt-ms", type=float, default=0)
    args = parser.parse_args()
    specs = [route.split(":") for route in args.route]
    routes = {name: (int(listen), int(upstream)) for name, listen, upstream, *_ in specs}
    tls = frozenset(spec[0] for spec in specs if spec[3:] == ["tls"])
    asyncio.run(Proxy(routes, args.rtt_ms, tls).serve(args.control))


if __name__ == "__main__":
    main()
