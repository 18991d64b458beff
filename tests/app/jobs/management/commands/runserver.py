"""Django's runserver, with TCP_NODELAY on each accepted connection.

Its handler writes an answer's head and body in separate sends; on a
kept-alive connection (workerd's libcurl reuses them) Nagle's algorithm then
holds the body until the client's delayed ACK, about 40 ms per call. A real
deployment's server (gunicorn, uwsgi) sets TCP_NODELAY itself.
"""
import socket

from django.core.management.commands.runserver import Command as RunserverCommand
from django.core.servers.basehttp import WSGIServer


class NoDelayWSGIServer(WSGIServer):
    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class Command(RunserverCommand):
    server_cls = NoDelayWSGIServer
