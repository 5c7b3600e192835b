"""bench/qga.py: a small client for the QEMU guest agent wire protocol, used by bench/bench.py
against both vmuser-agent (VM/agent.sock) and qemu-ga (VM/qga.sock).

Flow: connect to the chardev's UNIX socket -> sync (0xFF + guest-sync-delimited with a random id;
everything up to 0xFF {"return": id} is discarded) -> call() sends one request and reads one
reply line, or ping_stream() keeps a window of guest-ping requests in flight and counts the
replies. Both agents end every reply with "\\n" (doc/PROTOCOL.txt, section 2), so a reply is a
line. The peers are measured with the same code, so the client's own cost cancels out in the
ratios."""
import json
import random
import select
import socket
import time


class QgaError(Exception):
    pass


class QgaClient:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise QgaError(f"{self.path}: no reply within {self.timeout:.0f} s")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise QgaError(f"{self.path}: the agent side closed the connection")
        self.buf += data

    def _line(self, deadline):
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def sync(self):
        """0xFF + guest-sync-delimited; returns once the matching delimited reply is read."""
        ident = random.randrange(1, 2**31)
        req = json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": ident}})
        self.sock.sendall(b"\xff" + req.encode())
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\xff" not in self.buf:
                self.buf = b""
                self._fill(deadline)
            self.buf = self.buf[self.buf.index(b"\xff") + 1:]
            line = self._line(deadline).strip()
            try:
                if json.loads(line).get("return") == ident:
                    return
            except ValueError:
                pass

    def call(self, command, arguments=None):
        """One request, one reply; returns the "return" value, raises QgaError on "error"."""
        req = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._line(deadline).strip(b" \t\r\xff")
            if not line:
                continue
            reply = json.loads(line)
            if "error" in reply:
                raise QgaError(f"{command}: {reply['error'].get('class')}: {reply['error'].get('desc')}")
            if "return" in reply:
                return reply["return"]

    def exec_wait(self, argv, poll=0.005):
        """guest-exec of argv, then guest-exec-status until it exited; returns the exit code."""
        pid = self.call("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        while True:
            st = self.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                return st.get("exitcode", -1)
            time.sleep(poll)

    def ping_stream(self, count, window=256):
        """Sends count guest-ping requests, at most window unanswered at a time, and reads the
        count replies. Returns (seconds, errors)."""
        req = b'{"execute": "guest-ping"}\n'
        sent = received = errors = 0
        pending = b""
        self.sock.setblocking(False)
        t0 = time.monotonic()
        deadline = t0 + max(self.timeout, count / 50.0)
        try:
            while received < count:
                if time.monotonic() > deadline:
                    raise QgaError(f"{self.path}: {received} of {count} pings answered in time")
                want_write = sent < count and sent - received < window
                if want_write and not pending:
                    n = min(count - sent, window - (sent - received))
                    pending = req * n
                    sent += n
                r, w, _ = select.select([self.sock], [self.sock] if pending else [], [], 1.0)
                if w:
                    try:
                        k = self.sock.send(pending)
                        pending = pending[k:]
                    except BlockingIOError:
                        pass
                if r:
                    data = self.sock.recv(1 << 20)
                    if not data:
                        raise QgaError(f"{self.path}: the agent side closed the connection")
                    self.buf += data
                    lines = self.buf.split(b"\n")
                    self.buf = lines.pop()
                    for line in lines:
                        line = line.strip()
                        if not line:
                            continue
                        received += 1
                        if not line.startswith(b'{"return"'):
                            errors += 1
        finally:
            self.sock.setblocking(True)
        return time.monotonic() - t0, errors


def ping_rtt(path, n):
    """n sequential guest-ping round trips on one synced connection; list of seconds."""
    out = []
    with QgaClient(path) as c:
        c.sync()
        c.call("guest-ping")
        for _ in range(n):
            t0 = time.perf_counter()
            c.call("guest-ping")
            out.append(time.perf_counter() - t0)
    return out


if __name__ == "__main__":  # by hand: qga.py SOCKET [exec ARGV... | stream COUNT]
    import sys
    p = sys.argv[1]
    with QgaClient(p) as c:
        c.sync()
        print(c.call("guest-ping"))
        if len(sys.argv) > 2 and sys.argv[2] == "exec":
            t0 = time.perf_counter()
            print(c.exec_wait(sys.argv[3:]), time.perf_counter() - t0)
        if len(sys.argv) > 2 and sys.argv[2] == "stream":
            print(c.ping_stream(int(sys.argv[3])))
    print(ping_rtt(p, 5))
