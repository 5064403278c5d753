"""Local port forwards through the SSH connection: 127.0.0.1:<free port> on this
machine to an address the host can reach; they survive reconnects."""

from __future__ import annotations

import select
import socket
import threading
import time

from .errors import TransportError


class Forward:
    def __init__(self, transport, remote_host: str, remote_port: int):
        self.t = transport
        self.remote_host, self.remote_port = remote_host, remote_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.local_port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._accept, daemon=True, name=f"fwd-{remote_port}").start()

    def close(self):
        self.alive = False
        try:
            # close() alone does not wake the accept() blocked in the other thread: the
            # port kept accepting, and each new client made the closed transport reconnect.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while self.alive:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                if not self.alive:
                    return
                # a client gone before it was accepted (ECONNABORTED), or no file descriptor
                # left for a moment: keep serving. Returning here left the port listening
                # with no one accepting: every later request timed out.
                time.sleep(0.1)
                continue
            if not self.alive:
                conn.close()
                return
            threading.Thread(target=self._pump, args=(conn, peer), daemon=True).start()

    def _pump(self, conn, peer):
        chan = None
        try:
            if not self.t.connected:
                try:
                    self.t.reconnect(30)
                except TransportError:
                    conn.close()
                    return
            chan = self.t.ssh().open_channel(
                "direct-tcpip", (self.remote_host, self.remote_port), peer, timeout=15
            )
        except Exception:
            conn.close()
            return
        try:
            while True:
                r, _, _ = select.select([conn, chan], [], [], 1.0)
                if conn in r:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in r:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                if chan.closed:
                    break
        except Exception:
            pass
        finally:
            for c in (chan, conn):
                try:
                    c.close()
                except Exception:
                    pass
