"""stallproxy.py - a TCP proxy whose existing connections can be made to
go silent without closing: what a browser sees when a NAT or a load
balancer drops a connection's state (nothing arrives, no FIN, no RST).

Owns: a loopback listener forwarding each connection to one target with
two threads per connection. stall() marks every connection open now as
stalled: from then on its bytes are read and discarded in both directions
(the sockets stay open, so neither end learns anything); connections made
later are forwarded normally. Must not: hold unbounded data (one 64 KiB
read per direction at a time) or outlive close() (sockets shut down).
"""

import socket
import threading


class StallProxy:
    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []  # [client, upstream, stalled-flag dict]
        self.accepted = 0
        self.discarded = 0  # bytes dropped from stalled connections
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            state = {"stalled": False}
            with self.lock:
                self.accepted += 1
                self.conns.append((c, u, state))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b, state), daemon=True).start()

    def _pipe(self, a, b, state):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if state["stalled"]:
                    self.discarded += len(data)
                    continue
                b.sendall(data)
        except OSError:
            pass
        if not state["stalled"]:  # a stalled one tells nobody it ended
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stall(self):
        with self.lock:
            for _, _, state in self.conns:
                state["stalled"] = True
            return len(self.conns)

    def close(self):
        self.closing = True
        self.lsock.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c, u, _ in conns:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
