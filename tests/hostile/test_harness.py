"""The harness itself: the canary must end up beside the public server whatever holds ports
on 127.0.0.1."""

from __future__ import annotations

import socket
import urllib.request

from tests.hostile.harness import PUBLIC_IP, Server, canary_beside


def test_canary_moves_the_public_server_off_a_port_taken_on_loopback():
    with Server() as public:
        public.html("/", "<p>public</p>")
        first = public.port
        # What a crawl's client sockets do to 127.0.0.1: hold the port the server got.
        holder = socket.socket()
        holder.bind(("127.0.0.1", first))
        holder.listen(1)
        try:
            canary = canary_beside(public)
        finally:
            holder.close()
        try:
            assert public.port != first
            assert canary.port == public.port
            with urllib.request.urlopen(f"http://{PUBLIC_IP}:{public.port}/", timeout=5) as r:
                assert r.read() == b"<p>public</p>"  # routes kept across the move
            assert canary.hits == 0
        finally:
            canary.close()
