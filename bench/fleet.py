#!/usr/bin/python3
"""bench/fleet.py: `vmuser apply` over 50 simulated VMs x 20 users, against a shell loop of
`vmuser attach` per VM; prints the [fleet apply] section of the bench table.

Runs as root in a private mount namespace (bench/fleet and bench/run start it under unshare -m):
a tmpfs on /run; 50 "VMs", each a real `vmuser-agent --listen` in a mount namespace of its own
with its own tmpfs on /run/userdb and /run/vmuser (what the agent writes), as the host suite's
test-host-apply does; then 20 host users in a copy of passwd/shadow/group bound over /etc (after
the agents started, so that no "guest" knows them). Homes are --home-tag specs: no export, no
QEMU. Everything is gone when the process ends.

Per repetition, interleaved: apply from empty, apply again (nothing to change), apply of an empty
user list (detaches all 1,000); then the peer: a shell loop of one `vmuser attach` per VM (all 20
users in one batch each, so one connection per VM as apply), the loop again (all attached), and a
loop of `vmuser detach`. Each run's output is checked (1,000 users added/unchanged/removed);
a run that did not do its work is not counted and the note says so. Nothing passes or fails."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Table  # noqa: E402

N_VMS = 50
N_USERS = 20
HASH = "$6$fleetsalt$Xq4C4mN3mY2oK0vQk7dF2rZ9wT1bL8sP5eR6yU3iO0aS4dF7gH2jK9lZ1xC5vB8nM3qW6eR9tY2uI5oP8aS1d."
SECTION = f"fleet apply ({N_VMS} simulated VMs x {N_USERS} users)"


def log(msg):
    print(f"bench/fleet: {msg}", file=sys.stderr, flush=True)


class Fleet:
    def __init__(self, vmuser, agent):
        self.vmuser = vmuser
        self.agent = agent
        self.work = "/run/vmuser-fleet"
        self.vm_dir = os.path.join(self.work, "vms")
        self.procs = []
        self.users = [f"vbf{i:02d}" for i in range(N_USERS)]
        self.vms = [f"fleet-{i:02d}" for i in range(N_VMS)]

    def setup(self):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
        for d in ("/run/userdb", "/run/vmuser", self.vm_dir, os.path.join(self.work, "etc")):
            os.makedirs(d, exist_ok=True)
        script = ('mount -t tmpfs -o mode=0755 tmpfs /run/userdb && mount -t tmpfs -o mode=0755 tmpfs /run/vmuser && '
                  'exec "$0" --userdb=dropin --listen "$1"')
        for vm in self.vms:
            os.makedirs(os.path.join(self.vm_dir, vm))
            sock = os.path.join(self.vm_dir, vm, "agent.sock")
            self.procs.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                                self.agent, sock], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL))
        deadline = time.time() + 30
        for vm in self.vms:
            while not os.path.exists(os.path.join(self.vm_dir, vm, "agent.sock")):
                if time.time() > deadline:
                    raise RuntimeError(f"the agent of {vm} did not start")
                time.sleep(0.01)
        etc = os.path.join(self.work, "etc")
        for f in ("passwd", "shadow", "group", "gshadow"):
            shutil.copy2(f"/etc/{f}", os.path.join(etc, f))
        with open(os.path.join(etc, "passwd"), "a") as pw, open(os.path.join(etc, "shadow"), "a") as sh, \
                open(os.path.join(etc, "group"), "a") as gr:
            for i, u in enumerate(self.users):
                uid = 195001 + i
                pw.write(f"{u}:x:{uid}:{uid}:Fleet bench {i}:/run/vmuser-fleet/home/{u}:/bin/sh\n")
                sh.write(f"{u}:{HASH}:19000:0:99999:7:::\n")
                gr.write(f"{u}:x:{uid}:\n")
        for f in ("passwd", "shadow", "group", "gshadow"):
            subprocess.run(["mount", "--bind", os.path.join(etc, f), f"/etc/{f}"], check=True)
        self.manifest_full = self.manifest(self.users)
        self.manifest_empty = self.manifest([])

    def manifest(self, users):
        path = os.path.join(self.work, f"manifest-{len(users)}.json")
        with open(path, "w") as f:
            json.dump({"defaults": {"homeTag": "vmuser-%u", "authorizedKeys": False},
                       "vms": [{"vm": "fleet-*", "users": users}]}, f)
        return path

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()

    def env(self):
        return dict(os.environ, VMUSER_VM_DIR=self.vm_dir)

    def apply(self, manifest, expect_key, jobs):
        argv = [self.vmuser, "apply", "--json", "--timeout", "30"] + (["--jobs", str(jobs)] if jobs else []) + [manifest]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, env=self.env())
        t = time.monotonic() - t0
        n = 0
        for line in p.stdout.splitlines():
            n += len(json.loads(line).get(expect_key) or [])
        if p.returncode != 0 or n != N_VMS * (N_USERS if expect_key != "unchanged" or manifest == self.manifest_full else 0):
            return None, f"apply exited {p.returncode} with {n} {expect_key}: {p.stderr.strip()[-300:]}"
        return t, None

    def loop(self, verb):
        users = " ".join(self.users)
        opts = "--home-tag vmuser-%u --no-authorized-keys" if verb == "attach" else ""
        script = f'for vm in {" ".join(self.vms)}; do "$0" {verb} --timeout 30 {opts} "$vm" {users} >/dev/null || exit 1; done'
        t0 = time.monotonic()
        p = subprocess.run(["sh", "-c", script, self.vmuser], capture_output=True, text=True, env=self.env())
        t = time.monotonic() - t0
        if p.returncode != 0:
            return None, f"the {verb} loop failed: {p.stderr.strip()[-300:]}"
        return t, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vmuser", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=0, help="apply --jobs (default: vmuser's, 16)")
    ap.add_argument("--out", help="append the section to this file")
    a = ap.parse_args()

    fleet = Fleet(a.vmuser, a.agent)
    table = Table()
    notes = []
    res = {k: [] for k in ("apply", "again", "prune", "loop", "loop_again", "loop_detach")}
    try:
        fleet.setup()
        for rep in range(a.reps + 1):  # the first round is a warm-up
            log(f"round {rep}/{a.reps}")
            runs = [
                ("apply", lambda: fleet.apply(fleet.manifest_full, "added", a.jobs)),
                ("again", lambda: fleet.apply(fleet.manifest_full, "unchanged", a.jobs)),
                ("prune", lambda: fleet.apply(fleet.manifest_empty, "removed", a.jobs)),
                ("loop", lambda: fleet.loop("attach")),
                ("loop_again", lambda: fleet.loop("attach")),
                ("loop_detach", lambda: fleet.loop("detach")),
            ]
            for key, fn in runs:
                t, err = fn()
                if err:
                    notes.append(f"{key}: {err}")
                    fleet.apply(fleet.manifest_empty, "removed", a.jobs)  # start the next from empty
                elif rep > 0:
                    res[key].append(t)
    finally:
        fleet.stop()

    jobs = a.jobs or 16
    peer = f"loop of vmuser attach per VM ({N_VMS} runs)"
    table.add(SECTION, f"vmuser apply, from empty (--jobs {jobs})", "s", res["apply"], peer, res["loop"],
              f"{N_VMS * N_USERS} users attached; {os.cpu_count()} CPUs; ratio < 1: apply is faster")
    table.add(SECTION, "vmuser apply, nothing to change", "s", res["again"], "the loop again (all attached)",
              res["loop_again"], "every VM listed, every user probed, nothing written")
    table.add(SECTION, "vmuser apply, empty user list (detach all)", "s", res["prune"],
              f"loop of vmuser detach per VM ({N_VMS} runs)", res["loop_detach"])
    text = table.render()
    if notes:
        text += "\nnotes:\n" + "\n".join(f"  - {n}" for n in notes[:10])
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
