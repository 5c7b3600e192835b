#!/usr/bin/env python3
"""fake-agent.py: misbehaving vmuser agents for the host suite's error paths.

Listens on a UNIX socket like `vmuser-agent --listen` and serves one client at a time.
Requests are read the way the real agent reads them (0xFF drops a partial request, one JSON
request per line); replies depend on --mode:

  silent       accepts and reads, never answers (agent not running in the guest)
  mute         answers the first sync of a connection, then nothing any more (a hung agent)
  nodelim      answers guest-sync-delimited without the 0xFF in front (not a valid sync)
  garbage      syncs correctly, then answers every request with a line that is not JSON
  huge         syncs correctly, then answers with a 17 MiB string (limits: 6 MiB, strings 4 KiB)
  deep         syncs correctly, then answers with a reply nested 40 levels deep
  late         syncs correctly; the first request is answered only after --delay seconds
               (naming user "first", uid 1111), later ones at once (uid 2222)
  close        syncs correctly, then closes the connection on the first request
  refuse       syncs correctly, then refuses every request; the desc has terminal escapes
  wrong-user   syncs correctly, then answers for another user than the one asked about
  foreign-id   syncs correctly, then precedes each real reply (uid 2222) with a reply carrying
               another request's id and one with the id as a string (both uid 1111)
  ok           a well-behaved agent for detach/list/guest-info (uid 2222)
  window       holds every reply until no request has come for 0.3 s, then sends the held
               replies newest first (out of order); writes the most requests it ever held
               unanswered to --stats; uid = 5000 + the number at the end of the user name
  window-drop  the same, but never answers the request for --drop NAME
  close-after  answers the first --after requests at once (uid as in window), then closes the
               connection

Hostile modes (test-host-hostile.c): the sync is answered after the payload, so the payload
is what the client reads while it waits for its sync reply; every request then gets the payload
with the request's id (about 15 MiB each, unless said otherwise):
  hostile-huge     a vmuser-list of plausible entries with long home directories
  hostile-objects  {"return": [{},{},{},...]}
  hostile-values   {"return": [0,0,0,...]}
  hostile-deep     {"return": [[[[... (no end)
  hostile-max      a vmuser-list reply just inside every limit of doc/PROTOCOL.txt, shaped for
                   the most json-c memory: 8702 empty objects, 83000 doubles, long strings
                   (6.2 MiB); vmuser parses it and must still stay below the RSS bound
  hostile-endless  sync answered; then a reply that never ends and has no newline, sent until
                   the client goes away
  hostile-drip     sync answered; then a reply trickling in at one byte per second

With --qmp, the socket speaks QMP instead (a hostile QEMU): the same payloads replace the
greeting (qmp-objects, qmp-values, qmp-deep, qmp-endless, qmp-drip), or qmp-events sends a
good greeting and answers every command only after 5000 events of 1 KiB (5 MiB: more than the event queue keeps).

With --one-connection the socket is closed after the first client that sent anything (the test
harness's readiness probe sends nothing): a second connection is refused, so a batch only
succeeds if it uses one connection for all its users.
  stale-proxy  relays to the real agent at --upstream, after putting stale bytes in both
               directions: old replies and a partial frame towards the client, a partial
               request towards the agent
"""
import argparse
import json
import os
import select
import socket
import sys
import time


def reply(conn, obj, delimited=False):
    data = json.dumps(obj).encode() + b"\n"
    conn.sendall((b"\xff" if delimited else b"") + data)


def normal_return(req, uid):
    verb = req.get("execute")
    args = req.get("arguments") or {}
    if verb == "vmuser-detach":
        return {"userName": args.get("userName"), "uid": uid}
    if verb == "vmuser-attach":
        name = (args.get("user") or {}).get("userName")
        return {"userName": name, "uid": uid, "gid": uid,
                "homeDirectory": "/run/vmhost/home/%s" % name, "changed": True}
    if verb == "guest-info":
        return {"version": "fake", "supported_commands": []}
    if verb == "vmuser-list":
        return []
    return {}


MIB15 = 15 * 1024 * 1024


def payload(mode, rid):
    """The hostile reply of a mode, as bytes (rid None: without an id)."""
    tail = b"]" + (b', "id": %d' % rid if rid is not None else b"") + b"}\n"
    if mode.endswith("huge"):
        entry = (b'{"userName": "vmtx", "uid": 60514, "gid": 60514, "homeDirectory": "/run/vmhost/home/'
                 + b"d" * 200 + b'", "home": null, "homeMounted": false, "sessions": 0, "attachedAt": 1},')
        return b'{"return": [' + entry * (MIB15 // len(entry)) + b"1" + tail
    if mode.endswith("objects"):
        return b'{"return": [' + b"{}," * (MIB15 // 3) + b"{}" + tail
    if mode.endswith("values"):
        return b'{"return": [' + b"0," * (MIB15 // 2) + b"0" + tail
    if mode.endswith("max"):
        # Limits of vmuser-list: 6356992 bytes, 102400 values, 8704 objects/arrays, tokens of
        # 4096 bytes. The envelope {"return": [..], "id": N} takes 2 containers and 6 values.
        objects = b"{}," * 8702                       # 8702 containers, 17404 values
        doubles = b"1.5," * 83000                     # 83000 values
        string = b'"' + b"s" * 4000 + b'",'
        room = 6356992 - len(objects) - len(doubles) - 64
        strings = string * (room // len(string))      # about 1500 values
        return b'{"return": [' + objects + doubles + strings + b"1" + tail
    if mode.endswith("deep"):
        return b'{"return": ' + b"[" * MIB15
    raise ValueError(mode)


def endless(conn, head):
    conn.sendall(head)
    chunk = b'{"a": 1}, ' * 6000
    while True:
        conn.sendall(chunk)


def drip(conn, head):
    for b in head:
        conn.sendall(bytes([b]))
        time.sleep(1)
    while True:
        conn.sendall(b" ")
        time.sleep(1)


def serve_qmp(conn, mode):
    greeting = b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\n'
    if mode == "qmp-endless":
        endless(conn, b'{"QMP": {"version": [')
    if mode == "qmp-drip":
        drip(conn, b'{"QMP": {"version": [')
    if mode != "qmp-events":
        conn.sendall(payload(mode, None).replace(b'{"return"', b'{"QMP"', 1))
        while conn.recv(65536):
            pass
        return
    conn.sendall(greeting)
    buf = b""
    event = (b'{"event": "VSERPORT_CHANGE", "data": {"id": "' + b"e" * 900
             + b'", "open": true}, "timestamp": {"seconds": 1, "microseconds": 2}}\n')
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            conn.sendall(event * 5000)
            conn.sendall(json.dumps({"return": {}, "id": req.get("id")}).encode() + b"\n")


class Session:
    def __init__(self, conn, opts):
        self.conn = conn
        self.opts = opts
        self.requests = 0
        self.syncs = 0
        self.used = False
        self.held = []
        self.max_held = 0

    def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError:
            return
        verb = req.get("execute")
        rid = req.get("id")
        mode = self.opts.mode
        if mode.startswith("hostile-"):
            if verb in ("guest-sync-delimited", "guest-sync"):
                if mode not in ("hostile-endless", "hostile-drip"):
                    self.conn.sendall(payload(mode, None))
                reply(self.conn, {"return": req["arguments"]["id"]}, delimited=True)
            elif mode == "hostile-endless":
                endless(self.conn, b'{"id": %d, "return": [' % rid)
            elif mode == "hostile-drip":
                drip(self.conn, b'{"id": %d, "return": [' % rid)
            else:
                self.conn.sendall(payload(mode, rid))
            return
        if verb in ("guest-sync-delimited", "guest-sync"):
            self.syncs += 1
            if mode == "silent" or (mode == "mute" and self.syncs > 1):
                return
            reply(self.conn, {"return": req["arguments"]["id"]},
                  delimited=(verb == "guest-sync-delimited" and mode != "nodelim"))
            return

        self.requests += 1
        if mode in ("silent", "mute"):
            return
        if mode == "garbage":
            self.conn.sendall(b"this is not json at all\n")
        elif mode == "huge":
            self.conn.sendall(b'{"return": "' + b"A" * (17 * 1024 * 1024) + b'"}\n')
        elif mode == "deep":
            self.conn.sendall(b'{"return": ' + b"[" * 40 + b"]" * 40 + b', "id": %d}\n' % rid)
        elif mode == "late":
            if self.requests == 1:
                time.sleep(self.opts.delay)
                ret = normal_return(req, 1111)
                ret["userName"] = "first"
                reply(self.conn, {"return": ret, "id": rid})
            else:
                reply(self.conn, {"return": normal_return(req, 2222), "id": rid})
        elif mode == "close":
            raise ConnectionResetError
        elif mode == "close-after":
            if self.requests > self.opts.after:
                raise ConnectionResetError
            args = req.get("arguments") or {}
            name = (args.get("user") or {}).get("userName") or ""
            digits = name[len(name.rstrip("0123456789")):]
            reply(self.conn, {"return": normal_return(req, 5000 + int(digits or 0)), "id": rid})
        elif mode == "refuse":
            reply(self.conn, {"error": {"class": "GenericError",
                                        "desc": "fake refusal \x1b[31mred\x1b[0m of '%s'" % verb},
                              "id": rid})
        elif mode == "foreign-id":
            planted = normal_return(req, 1111)
            reply(self.conn, {"return": planted, "id": rid + 1000})
            reply(self.conn, {"return": planted, "id": "%d" % rid})
            reply(self.conn, {"return": normal_return(req, 2222), "id": rid})
        elif mode in ("window", "window-drop"):
            args = req.get("arguments") or {}
            name = (args.get("user") or {}).get("userName") or args.get("userName") or ""
            digits = name[len(name.rstrip("0123456789")):]
            self.held.append((name, {"return": normal_return(req, 5000 + int(digits or 0)), "id": rid}))
            self.max_held = max(self.max_held, len(self.held))
            if self.opts.stats:
                with open(self.opts.stats, "w") as f:
                    f.write("%d\n" % self.max_held)
        elif mode == "wrong-user":
            ret = normal_return(req, 2222)
            ret["userName"] = "somebody-else"
            reply(self.conn, {"return": ret, "id": rid})
        else:
            reply(self.conn, {"return": normal_return(req, 2222), "id": rid})

    def flush_held(self):
        for name, obj in reversed(self.held):
            if self.opts.mode == "window-drop" and name == self.opts.drop:
                continue
            reply(self.conn, obj)
        self.held = []

    def serve(self):
        buf = b""
        if self.opts.mode.startswith("window"):
            self.conn.settimeout(0.3)
        while True:
            try:
                data = self.conn.recv(65536)
            except socket.timeout:
                self.flush_held()
                continue
            if not data:
                return
            self.used = True
            for b in data:
                if b == 0xFF:
                    buf = b""
                elif b == 0x0A:
                    if buf.strip():
                        self.handle(buf)
                    buf = b""
                else:
                    buf += bytes([b])


STALE_TO_CLIENT = (
    # What an earlier client left unread, then a sync reply without its 0xFF, then noise and
    # a frame that never ends. A client that does not sync takes the first line for its reply.
    b'{"return": {"userName": "vmtstale", "uid": 4242, "gid": 4242, '
    b'"homeDirectory": "/run/vmhost/home/vmtstale", "changed": true}}\n'
    b'{"return": 1}\n'
    b'\x01 noise that is not json\n'
    b'{"return": {"userName": "'
)
# An earlier client died in the middle of a request.
STALE_TO_AGENT = b'{"execute": "vmuser-detach", "arguments": {"userName": "'


def proxy(conn, upstream_path):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    up.connect(upstream_path)
    conn.sendall(STALE_TO_CLIENT)
    up.sendall(STALE_TO_AGENT)
    pairs = {conn: up, up: conn}
    try:
        while True:
            ready, _, _ = select.select([conn, up], [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                pairs[s].sendall(data)
    finally:
        up.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--delay", type=float, default=1.5)
    p.add_argument("--upstream")
    p.add_argument("--stats")
    p.add_argument("--drop")
    p.add_argument("--after", type=int, default=5)
    p.add_argument("--one-connection", action="store_true")
    p.add_argument("--qmp", action="store_true")
    opts = p.parse_args()

    try:
        os.unlink(opts.listen)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(opts.listen)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        session = None
        try:
            if opts.qmp:
                serve_qmp(conn, opts.mode)
            elif opts.mode == "stale-proxy":
                proxy(conn, opts.upstream)
            else:
                session = Session(conn, opts)
                session.serve()
        except (ConnectionError, BrokenPipeError, OSError) as e:
            print("fake-agent: %s" % e, file=sys.stderr)
        finally:
            conn.close()
        if opts.one_connection and session and session.used:
            srv.close()
            os.unlink(opts.listen)
            return


if __name__ == "__main__":
    main()
