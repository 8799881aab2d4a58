"""A small MQTT 3.1.1 publisher over a raw socket, standard library only.

Publishes are encoded into a buffer and written in bulk, so one Python thread can produce tens of
thousands of messages per second; a reader thread counts PUBACKs and answers nothing else.
"""

import socket
import struct
import threading
import time


def _length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


class Publisher:
    def __init__(self, host, port, client_id, keepalive=60, username=None, password=None):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags, login = 0x02, b""
        if username is not None:
            flags |= 0x80 | 0x40
            login = _str(username) + _str(password or "")
        body = _str("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + _str(client_id) + login
        self.sock.sendall(b"\x10" + _length(len(body)) + body)
        head = self._recv_exact(4)
        if head[0] != 0x20 or head[3] != 0:
            raise ConnectionError(f"CONNACK refused: {head.hex()}")
        self.sock.settimeout(None)
        self.buf = bytearray()
        self.next_id = 1
        self.unacked = set()
        self.acked = threading.Condition()
        self.send_lock = threading.Lock()
        self.closed = False
        self.last_send = time.monotonic()
        self.keepalive = keepalive
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._ping, daemon=True).start()

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(buf):
                    n += (buf[i] & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not buf[i - 1] & 0x80:
                        break
                else:
                    break
                if len(buf) < i + n:
                    break
                kind, body, buf = buf[0] >> 4, buf[i:i + n], buf[i + n:]
                if kind == 4:  # PUBACK
                    with self.acked:
                        self.unacked.discard(struct.unpack(">H", body[:2])[0])
                        self.acked.notify_all()
        self.closed = True
        with self.acked:
            self.acked.notify_all()

    def _ping(self):
        while not self.closed:
            time.sleep(1)
            if time.monotonic() - self.last_send > self.keepalive / 2:
                with self.send_lock:
                    self.sock.sendall(b"\xc0\x00")
                    self.last_send = time.monotonic()

    def publish(self, topic, payload, qos=0, retain=False):
        """Buffers one PUBLISH; `flush()` sends the buffer."""
        if isinstance(payload, str):
            payload = payload.encode()
        body = _str(topic)
        if qos:
            pid = self.next_id
            self.next_id = pid % 65535 + 1
            while pid in self.unacked:  # 65535 in flight: wait for the oldest
                self.flush()
                self.wait_acks(10)
            with self.acked:
                self.unacked.add(pid)
            body += struct.pack(">H", pid)
        body += payload
        self.buf += bytes([0x30 | qos << 1 | int(retain)]) + _length(len(body)) + body
        if len(self.buf) > 1 << 16:
            self.flush()

    def flush(self):
        if self.buf:
            with self.send_lock:
                self.sock.sendall(self.buf)
                self.last_send = time.monotonic()
            self.buf = bytearray()

    def wait_acks(self, timeout=30):
        """Flushes, then waits until every QoS 1 publish so far is acknowledged."""
        self.flush()
        deadline = time.monotonic() + timeout
        with self.acked:
            while self.unacked and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.unacked)} PUBACKs missing after {timeout} s")
                self.acked.wait(left)
        if self.closed and self.unacked:
            raise ConnectionError("broker closed the connection with PUBACKs missing")

    def close(self):
        try:
            self.flush()
            self.sock.sendall(b"\xe0\x00")
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
