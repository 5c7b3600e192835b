#!/usr/bin/python3
"""bench/bench.py: the measurements behind bench/run, against one running test guest.

bench/run builds the project and the image, boots the guest with both agents (vmuser-agent on
agent.sock, qemu-ga on qga.sock) and runs this script in a private mount namespace, where the
host users it needs exist only in a copy of /etc bound over /etc (HostUsers): nothing is added
to the host's user database, and everything is gone when this process exits.

Flow: guest setup (pam_vmuser on, a local comparison user, a PAM service for pamtester) ->
attach latency (vmuser attach vs qemu-ga guest-exec, ssh useradd, bare round trips) -> login
overhead (pamtester open+close session, ssh login to prompt; attached vs local user) ->
footprint (RSS idle and across 100,000 pipelined pings, idle CPU; vmuser-agent vs qemu-ga) ->
bulk (agent restarted with a wide UID range, 10,000 users in one `vmuser attach`, RSS after,
getent cost) -> one table. Paired measurements are interleaved (A, B, A, B, ...) so that noise
from a shared, software-emulated machine hits both sides alike; each pair starts with an
unrecorded warm-up round.

Every row is: figure, median, min, max, n, peer, peer median, ratio = figure / peer (both
medians). Nothing here passes or fails; a step that cannot be measured says so in the table."""
import argparse
import json
import os
import re
import resource
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qga import QgaClient, QgaError  # noqa: E402

# Host users of the benchmark (in the private copies only). UIDs far above any real user.
ATTACH_USER = "vbattach"
LOGIN_USER = "vblogin"
BULK_PREFIX = "vb"
HOST_UID_BASE = 190001
BULK_HOST_UID_BASE = 200001
LOCAL_USER = "localu"                    # guest /etc/passwd user, the peer of attached users
PEER_USER = "vbpeer"                     # created by the useradd peers in the guest
BULK_RANGE = (200000, 299999)            # agent UID range for the bulk step
PAM_SERVICE = "vmuser-bench"
BULK_TIMEOUT = 30                        # vmuser --timeout per request in the bulk step
RUN_TARGET = 870                         # seconds: the whole run, when the bulk budget is automatic
BULK_RESERVE = 60                        # seconds kept for what follows the bulk attach
PING_WINDOW = 64                         # pipelined pings in flight (see README: qemu-ga)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- statistics and the table -------------------------------------------------------------------

class Table:
    def __init__(self):
        self.rows = []     # (section, figure, unit, values, peer, peer_values, note)
        self.notes = []

    def add(self, section, figure, unit, values, peer, peer_values, note=None, at=None):
        row = (section, figure, unit, list(values or []), peer, list(peer_values or []), note)
        self.rows.insert(len(self.rows) if at is None else at, row)

    def failed(self, section, figure, why):
        self.rows.append((section, figure, "", [], "", [], f"not measured: {why}"))

    @staticmethod
    def fmt(v, unit):
        if v is None:
            return "-"
        if unit == "s":
            if v < 1.0:
                return f"{v * 1000:.1f} ms" if v >= 0.01 else f"{v * 1000:.2f} ms"
            return f"{v:.2f} s"
        if unit == "KiB":
            return f"{v / 1024:.1f} MiB" if v >= 10240 else f"{v:.0f} KiB"
        if unit in ("users/s", "req/s"):
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.1f} {unit}"
        if unit == "B":
            return f"{v / 1024:.1f} KiB" if v >= 10240 else f"{v:.0f} B"
        if unit == "ms/10s":
            return f"{v:.0f} ms CPU/10 s"
        if unit == "ratio":
            return f"{v:.2f}"
        return f"{v:g} {unit}"

    def render(self):
        head = ["figure", "median", "min", "max", "n", "peer", "peer median", "ratio"]
        lines = []
        section = None
        body = []
        for sec, fig, unit, vals, peer, pvals, note in self.rows:
            if sec != section:
                body.append(("section", sec))
                section = sec
            if not vals:
                body.append(("row", [fig, "-", "-", "-", "0", peer or "-", "-", "-"], note))
                continue
            med = statistics.median(vals)
            pmed = statistics.median(pvals) if pvals else None
            ratio = "-"
            if pmed:
                ratio = f"{med / pmed:.2f}"
            elif pmed == 0 and pvals:
                ratio = "n/a (peer 0)"
            body.append(("row", [fig, self.fmt(med, unit), self.fmt(min(vals), unit), self.fmt(max(vals), unit),
                                 str(len(vals)), peer or "-", self.fmt(pmed, unit) if pvals else "-", ratio], note))
        widths = [len(h) for h in head]
        for kind, *rest in body:
            if kind == "row":
                for i, c in enumerate(rest[0]):
                    widths[i] = max(widths[i], len(c))
        right = {1, 2, 3, 4, 6, 7}

        def line(cells):
            return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                             for i, c in enumerate(cells)).rstrip()
        lines.append(line(head))
        lines.append("  ".join("-" * w for w in widths))
        for kind, *rest in body:
            if kind == "section":
                lines.append(f"[{rest[0]}]")
            else:
                lines.append(line(rest[0]))
                if rest[1]:
                    lines.append(f"    ^ {rest[1]}")
        return "\n".join(lines)


# ---- the guest ----------------------------------------------------------------------------------

class Guest:
    def __init__(self, vm_dir, work):
        self.vm_dir = vm_dir
        self.port = open(os.path.join(vm_dir, "ssh-port")).read().strip()
        self.key = os.path.join(vm_dir, "id_ed25519")
        self.base_opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                          "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                          "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-p", self.port]
        # Untimed control commands share one connection; timed ssh logins never do.
        self.ctl = os.path.join(work, "ssh-ctl")
        self.ctl_opts = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.ctl}", "-o", "ControlPersist=600"]

    def ssh_argv(self, user="root", key=None, control=False, tty=False):
        argv = ["ssh", *self.base_opts, "-i", key or self.key]
        argv += self.ctl_opts if control else ["-o", "ControlPath=none"]
        if tty:
            argv.append("-tt")
        return argv + [f"{user}@127.0.0.1"]

    def run(self, script, check=True, timeout=600):
        """A root shell script in the guest (bash, on stdin), over the shared connection."""
        p = subprocess.run(self.ssh_argv(control=True) + ["bash", "-s"], input=script, text=True,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"guest script failed ({p.returncode}): {p.stderr.strip()[-800:]}\n--- script:\n{script}")
        return p.stdout

    def close(self):
        subprocess.run(["ssh", "-o", f"ControlPath={self.ctl}", "-O", "exit", "x"], capture_output=True)

    def agent_pid(self, unit):
        return int(self.run(f"systemctl show -P MainPID {unit}").strip())

    def rss_kib(self, pid):
        out = self.run(f"awk '/^VmRSS:/ {{print $2}}' /proc/{pid}/status")
        return int(out.strip())


def timed_pairs(text):
    """Lines "TAG RC T0 T1" (EPOCHREALTIME stamps) -> {tag: [seconds]}, failures counted."""
    res, bad = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        tag, rc, t0, t1 = parts
        if rc != "0":
            bad[tag] = bad.get(tag, 0) + 1
            continue
        res.setdefault(tag, []).append(float(t1) - float(t0))
    return res, bad


# ---- host users in private copies of the user database -----------------------------------------

class HostUsers:
    """The host users of the benchmark, in a private copy of /etc bound over /etc in this
    process's private mount namespace (bench/run starts us under unshare -m). A copy of the whole
    directory, not bind mounts of the three files: useradd or userdel on the host (another test
    running meanwhile) renames a new /etc/passwd into place, which would detach a bind mount on
    the file itself (the kernel drops mounts on a dentry that is renamed over)."""

    def __init__(self, work, password_hash):
        self.etc = os.path.join(work, "etc")
        self.hash = password_hash
        self.orig = {f: open(f"/etc/{f}").read() for f in ("passwd", "group", "shadow")}
        subprocess.run(["cp", "-a", "/etc", self.etc], check=True)
        subprocess.run(["mount", "--bind", self.etc, "/etc"], check=True)

    def _lines(self, users):
        pw, gr, sh = [], [], []
        for name, uid, home in users:
            pw.append(f"{name}:x:{uid}:{uid}:vmuser bench:{home}:/bin/bash\n")
            gr.append(f"{name}:x:{uid}:\n")
            sh.append(f"{name}:{self.hash}:20000:0:99999:7:::\n")
        return {"passwd": "".join(pw), "group": "".join(gr), "shadow": "".join(sh)}

    def set_users(self, users):
        """/etc/passwd, group and shadow of the copy: the host's, plus these users."""
        extra = self._lines(users)
        for f in ("passwd", "group", "shadow"):
            path = os.path.join(self.etc, f)
            base = self.orig[f]
            if base and not base.endswith("\n"):
                base += "\n"
            st = os.stat(path)
            with open(path + ".bench-tmp", "w") as fh:
                fh.write(base + extra[f])
            os.chmod(path + ".bench-tmp", st.st_mode & 0o7777)
            os.chown(path + ".bench-tmp", st.st_uid, st.st_gid)
            os.rename(path + ".bench-tmp", path)


# ---- home I/O (issue 15): the virtiofs home vs the guest's disk, both file servers ---------------

HOME_IO_USERS = (("vbhomeu", "unprivileged"), ("vbhomer", "root"))  # host users, file server each
HOME_IO_HOST_UID_BASE = 190101
HOME_IO_OPS = (("create", "create {files:,} small files"), ("write", "write {mib} MiB (dd, fsync)"),
               ("read", "read {mib} MiB (dd, caches dropped)"), ("stat", "stat walk of the {files:,} files (find)"))

# One round, as root in the guest, on all three directories: operation by operation, each on the
# three directories back to back in the given order, so that the two servers' figures of one
# round are seconds apart (the host's other work drifts over minutes). The workload runs as the
# user (setpriv). Each timed step prints "OP-TARGET RC T0 T1" (EPOCHREALTIME); the guest's
# caches are dropped before the reads and the walks. The walk prints numeric IDs (%U): with %u
# every file costs an NSS lookup (nss-systemd), which would be timed instead of the stat.
HOME_IO_ROUND = r"""
set -u
cd /  # find returns to its starting directory: not root's home, which the user cannot enter
targets="{targets}"  # TARGET:UID:DIR ...
t() {{ local tag=$1 t0 rc; shift; t0=$EPOCHREALTIME; "$@" </dev/null >/dev/null 2>&1; rc=$?; echo "$tag $rc $t0 $EPOCHREALTIME"; }}
drop() {{ sync; echo 3 >/proc/sys/vm/drop_caches; }}
each() {{  # OP COMMAND...: COMMAND as the user of each target, $d its directory
    local op=$1 x tgt uid d; shift
    for x in $targets; do
        IFS=: read -r tgt uid d <<<"$x"; d=$d/vbh-io
        t "$op-$tgt" setpriv --reuid="$uid" --regid="$uid" --clear-groups -- env d="$d" bash -c "$*"
    done
}}
for x in $targets; do
    IFS=: read -r tgt uid d <<<"$x"
    setpriv --reuid="$uid" --regid="$uid" --clear-groups -- bash -c "rm -rf '$d/vbh-io' && mkdir '$d/vbh-io'" || exit 1
done
drop
each create 'cd "$d" && for i in $(seq {files}); do echo x >f$i; done'
each write 'dd if=/dev/zero of="$d/big" bs=1M count={mib} conv=fsync'
drop
each read 'dd if="$d/big" of=/dev/null bs=1M'
drop
each stat 'find "$d" -printf "%U %s %T@\n"'
for x in $targets; do
    IFS=: read -r tgt uid d <<<"$x"
    setpriv --reuid="$uid" --regid="$uid" --clear-groups -- rm -rf "$d/vbh-io"
done
"""


class HomeIO:
    """The home I/O rows: the same workload, in the same run, on the guest's own disk and on the
    virtiofs homes of two users attached at the same time, one served by the unprivileged file
    server and one by the root file server (VMUSER_FILE_SERVER). In a round each operation runs on
    the three directories back to back, in an order rotated from round to round, so that noise
    hits all three alike; the per-round ratio of the two servers is the figure to read."""

    SECTION = "home I/O (in the guest: virtiofs home vs the guest's disk; unprivileged vs root file server)"

    def __init__(self, bench):
        self.b = bench

    def run(self):
        b = self.b
        files, mib, reps = b.a.home_files, b.a.home_mib, b.a.home_reps
        log(f"home I/O: {reps} rounds (+{b.warm} warm-up) of {files} files, {mib} MiB, on disk and both homes")
        homes = os.path.join(b.work, "homes")
        mine = []
        for i, (name, _) in enumerate(HOME_IO_USERS):
            home = os.path.join(homes, name)
            os.makedirs(home, exist_ok=True)
            os.chown(home, HOME_IO_HOST_UID_BASE + i, HOME_IO_HOST_UID_BASE + i)
            os.chmod(home, 0o700)
            mine.append((name, HOME_IO_HOST_UID_BASE + i, home))
        b.hostdb.set_users(b.host_users + mine)
        targets = {}
        try:
            for name, server in HOME_IO_USERS:
                env = dict(os.environ, VMUSER_FILE_SERVER=server)
                p = subprocess.run([b.vmuser, "attach", "--json", "--replace", "--no-password", b.vm_dir, name],
                                   capture_output=True, text=True, env=env, timeout=600)
                if p.returncode != 0:
                    raise RuntimeError(f"attach {name} ({server}) failed: {(p.stdout + p.stderr).strip()[:300]}")
                reply = json.loads(p.stdout.strip().splitlines()[-1])
                if reply.get("fileServer") != server:
                    raise RuntimeError(f"attach {name} asked for a {server} file server, got {reply.get('fileServer')}")
                uid, tag = int(reply["uid"]), reply["homeTag"]
                b.g.run(f"set -e; install -d /mnt/{name}; mountpoint -q /mnt/{name} || "
                        f"mount -t virtiofs {tag} /mnt/{name}")
                targets[server] = (uid, f"/mnt/{name}")
            uid = targets["unprivileged"][0]
            b.g.run(f"set -e; install -d -o {uid} -g {uid} /var/tmp/vbh-disk")
            targets["disk"] = (uid, "/var/tmp/vbh-disk")
            order = ["disk", "unprivileged", "root"]
            res = {}
            t0 = time.perf_counter()
            for r in range(reps + b.warm):
                rot = order[r % 3:] + order[:r % 3]
                spec = " ".join(f"{tgt}:{targets[tgt][0]}:{targets[tgt][1]}" for tgt in rot)
                out = b.g.run(HOME_IO_ROUND.format(targets=spec, files=files, mib=mib), timeout=3600)
                got, bad = timed_pairs(out)
                missing = [f"{op}-{tgt}" for op, _ in HOME_IO_OPS for tgt in order if f"{op}-{tgt}" not in got]
                if bad or missing:
                    raise RuntimeError(f"home I/O round {r + 1} failed: {bad or ''} {missing or ''}".strip())
                if r >= b.warm:
                    for k, v in got.items():
                        res.setdefault(k, []).extend(v)
                log(f"home I/O: round {r + 1} of {reps + b.warm} done after {time.perf_counter() - t0:.0f} s")
            for op, label in HOME_IO_OPS:
                fig = label.format(files=files, mib=mib)
                disk = res.get(f"{op}-disk", [])
                unpriv = res.get(f"{op}-unprivileged", [])
                root = res.get(f"{op}-root", [])
                b.t.add(self.SECTION, f"{fig}: home, unprivileged server", "s", unpriv, "guest disk", disk)
                b.t.add(self.SECTION, f"{fig}: home, root server", "s", root, "guest disk", disk)
                b.t.add(self.SECTION, f"{fig}: unprivileged vs root server", "s", unpriv, "root server", root)
                # The ratio of medians above mixes rounds; the same round's two servers ran back to
                # back, so the per-round ratio cancels what drifts between rounds (other work on
                # the host). Its median and range (min, max) are the figure issue 15's 10% is about.
                paired = [u / r for u, r in zip(unpriv, root) if r > 0]
                b.t.add(self.SECTION, f"{fig}: unprivileged / root, per round", "ratio", paired, None, [],
                        "median and range of the per-round ratios")
            b.t.notes.append("home I/O: guest page cache dropped before each read and stat walk, not the host's "
                             "(virtiofsd reads through the host's cache, alike for both servers); cache=auto")
        finally:
            b.g.run("umount /mnt/vbhomeu /mnt/vbhomer 2>/dev/null; rm -rf /var/tmp/vbh-disk; true", check=False)
            for name, _ in HOME_IO_USERS:
                b.vmuser_run("detach", "--force", b.vm_dir, name)
            b.hostdb.set_users(b.host_users)


# ---- the benchmarks ------------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.vm_dir = a.vm_dir
        self.vmuser = a.vmuser
        self.work = tempfile.mkdtemp(prefix="vmuser-bench.", dir="/var/tmp")
        self.g = Guest(self.vm_dir, self.work)
        self.t = Table()
        self.agent_sock = os.path.join(self.vm_dir, "agent.sock")
        self.qga_sock = os.path.join(self.vm_dir, "qga.sock")
        self.reps = a.reps
        self.warm = 1
        self.hash = subprocess.run(["openssl", "passwd", "-6", "-salt", "vmuserbench", "bench-Passw0rd"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        self.home_args = ["--home-tag", "vmuser-%u", "--home-fstype", "tmpfs"]
        self.home_kind = "tmpfs stand-in (--home-tag vmuser-%u --home-fstype tmpfs)"

    def cleanup(self):
        self.g.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def vmuser_run(self, *args, timeout=3600):
        return subprocess.run([self.vmuser, *args], capture_output=True, text=True, timeout=timeout)

    # -- setup

    def setup(self):
        log("guest setup: pam_vmuser, local user, PAM service, agents")
        os.makedirs(os.path.join(self.work, "homes"), exist_ok=True)
        self.user_key = os.path.join(self.work, "user_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.user_key], check=True)
        pub = open(self.user_key + ".pub").read().strip()
        homes = os.path.join(self.work, "homes")
        users = []
        for i, name in enumerate((ATTACH_USER, LOGIN_USER)):
            home = os.path.join(homes, name)
            os.makedirs(os.path.join(home, ".ssh"))
            with open(os.path.join(home, ".ssh", "authorized_keys"), "w") as fh:
                fh.write(pub + "\n")
            for root, dirs, files in os.walk(home):
                for p in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(p, HOST_UID_BASE + i, HOST_UID_BASE + i)
            os.chmod(home, 0o755)
            users.append((name, HOST_UID_BASE + i, home))
        os.chmod(self.work, 0o755)
        self.hostdb = HostUsers(self.work, self.hash)
        self.host_users = users
        self.hostdb.set_users(users)

        out = self.g.run(f"""
set -e
pam-auth-update --enable vmuser >/dev/null 2>&1
grep -q pam_vmuser /etc/pam.d/common-session-noninteractive
printf '%s\\n' '# vmuser bench: the session stack of non-interactive services, pam_vmuser included' \\
    '@include common-session-noninteractive' >/etc/pam.d/{PAM_SERVICE}
install -d -m 0755 /etc/skel-empty
id {LOCAL_USER} >/dev/null 2>&1 || useradd -m -k /etc/skel-empty -s /bin/bash -p '{self.hash}' {LOCAL_USER}
install -d -m 0700 -o {LOCAL_USER} -g {LOCAL_USER} /home/{LOCAL_USER}/.ssh
echo '{pub}' >/home/{LOCAL_USER}/.ssh/authorized_keys
chown {LOCAL_USER}: /home/{LOCAL_USER}/.ssh/authorized_keys
for u in vmuser-agent qemu-guest-agent; do
    for i in $(seq 30); do systemctl is-active -q $u && break; sleep 1; done
    echo "$u $(systemctl is-active $u) $(systemctl show -P MainPID $u)"
done
echo "uid $(id -u {LOCAL_USER})"
echo "qga $(dpkg-query -W -f='${{Version}}' qemu-guest-agent)"
""")
        info = dict(line.split(" ", 1) for line in out.strip().splitlines())
        self.local_uid = int(info["uid"])
        self.qga_version = info["qga"]
        for unit in ("vmuser-agent", "qemu-guest-agent"):
            if not info[unit].startswith("active"):
                raise RuntimeError(f"{unit} is not running in the guest: {info[unit]}")
        with QgaClient(self.qga_sock) as c:
            c.sync()
            c.call("guest-ping")
        # The real home export, once the host tool can do it; else the tmpfs stand-in.
        help_text = self.vmuser_run("attach", "--help").stdout
        self.export_available = "--home-source" in help_text
        # The peer of the bulk's "name found nowhere": the same miss with no user attached yet.
        self.records0 = self.count_records()
        self.miss0, self.miss0_bad = self.getent_group_miss(self.reps * 3)

    def count_records(self):
        """Attached users in the guest: the live names of records.journal (--userdb=varlink: one line
        per change, records and state together) plus the state files users/NAME.json (dropin)."""
        out = self.g.run("""
j=$(awk -F'"' '$2 == "remove" {delete a[$4]; next} $2 == "userName" {a[$4] = 1}
               END {n = 0; for (k in a) n++; print n}' /run/vmuser/records.journal 2>/dev/null || echo 0)
f=$(ls /run/vmuser/users 2>/dev/null | grep -c '\\.json$' || true)
echo $(( ${j:-0} + ${f:-0} ))
""")
        return int(out.strip() or 0)

    def probe_lookups(self, probe, reps):
        """getent passwd PROBE and id PROBE, timed in the guest: {what: [seconds]}, failures."""
        out = self.g.run(f"""
for i in $(seq {reps + self.warm}); do
    t0=$EPOCHREALTIME; getent passwd {probe} >/dev/null; rc=$?
    t1=$EPOCHREALTIME; [ $i -le {self.warm} ] || echo "passwd $rc $t0 $t1"
    t0=$EPOCHREALTIME; id {probe} >/dev/null; rc=$?
    t1=$EPOCHREALTIME; [ $i -le {self.warm} ] || echo "id $rc $t0 $t1"
done
""")
        return timed_pairs(out)

    # -- attach latency

    def attach_latency(self):
        log(f"attach latency: {self.reps} rounds (+{self.warm} warm-up)")
        sec = "attach latency (one user; host command start to reply)"
        att, att_exp, qexec, qssh, ping_a, ping_q, conn_a, conn_q = ([] for _ in range(8))
        failures = []
        exported = 0
        peer_useradd = ["/usr/sbin/useradd", "-M", "-N", "-g", PEER_USER, "-s", "/bin/bash", "-p", self.hash,
                        PEER_USER]
        ssh_cmd = (f"groupadd {PEER_USER} && useradd -M -N -g {PEER_USER} -s /bin/bash "
                   f"-p {shlex.quote(self.hash)} {PEER_USER}")
        undo = f"userdel {PEER_USER} 2>/dev/null; groupdel {PEER_USER} 2>/dev/null; true"
        self.g.run(undo)
        for r in range(self.warm + self.reps):
            keep = r >= self.warm
            # 1. vmuser attach (process start to exit), then an untimed detach: the record with
            #    a home spec only, and (when the host tool has it) the default with the home export.
            for home_args, out in ((self.home_args, att), ([], att_exp) if self.export_available else (None, None)):
                if home_args is None:
                    continue
                t0 = time.perf_counter()
                p = self.vmuser_run("attach", "--json", *home_args, self.vm_dir, ATTACH_USER)
                dt = time.perf_counter() - t0
                if p.returncode != 0 or '"changed":true' not in p.stdout:
                    failures.append(f"vmuser attach {' '.join(home_args)}: rc {p.returncode}: "
                                    f"{(p.stdout + p.stderr).strip()[:200]}")
                elif keep:
                    out.append(dt)
                    if out is att_exp:
                        exported += '"homeTag"' in p.stdout
                d = self.vmuser_run("detach", self.vm_dir, ATTACH_USER)
                if d.returncode != 0:
                    failures.append(f"vmuser detach: rc {d.returncode}: {(d.stdout + d.stderr).strip()[:200]}")
            # 2. qemu-ga: what an admin scripts today (connect, sync, groupadd, useradd).
            try:
                t0 = time.perf_counter()
                with QgaClient(self.qga_sock) as c:
                    c.sync()
                    rc1 = c.exec_wait(["/usr/sbin/groupadd", PEER_USER])
                    rc2 = c.exec_wait(peer_useradd)
                dt = time.perf_counter() - t0
                if rc1 or rc2:
                    failures.append(f"qemu-ga guest-exec groupadd/useradd exit codes {rc1}/{rc2}")
                elif keep:
                    qexec.append(dt)
            except (QgaError, OSError) as e:
                failures.append(f"qemu-ga guest-exec: {e}")
            self.g.run(undo)
            # 3. useradd over a fresh ssh connection.
            t0 = time.perf_counter()
            p = subprocess.run(self.g.ssh_argv() + [ssh_cmd], capture_output=True, text=True, timeout=120)
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                failures.append(f"ssh useradd: rc {p.returncode}: {p.stderr.strip()[:200]}")
            elif keep:
                qssh.append(dt)
            self.g.run(undo)
            # 4. bare round trips: fresh connection + sync + guest-ping, and pings on a synced one.
            for sock, conn, pings in ((self.agent_sock, conn_a, ping_a), (self.qga_sock, conn_q, ping_q)):
                t0 = time.perf_counter()
                with QgaClient(sock) as c:
                    c.sync()
                    c.call("guest-ping")
                    dt = time.perf_counter() - t0
                    for _ in range(20):
                        t1 = time.perf_counter()
                        c.call("guest-ping")
                        if keep:
                            pings.append(time.perf_counter() - t1)
                if keep:
                    conn.append(dt)
        fig = "vmuser attach, record only (--home-tag)"
        self.t.add(sec, fig, "s", att, "qemu-ga guest-exec groupadd+useradd", qexec,
                   "process start to exit; user + group + password hash + ssh key, home spec without export")
        self.t.add(sec, fig, "s", att, "ssh root@guest 'groupadd && useradd'", qssh)
        self.t.add(sec, fig, "s", att, "qemu-ga connect+sync+guest-ping", conn_q)
        if self.export_available:
            self.t.add(sec, "vmuser attach, default (record + home export)", "s", att_exp,
                       "qemu-ga guest-exec groupadd+useradd", qexec,
                       f"also exports the host home (idmapped mount, virtiofsd, QMP hot-plug); the reply named "
                       f"an exported tag in {exported} of {len(att_exp)} runs")
        self.t.add(sec, "vmuser-agent connect+sync+guest-ping", "s", conn_a, "qemu-ga connect+sync+guest-ping", conn_q)
        self.t.add(sec, "vmuser-agent guest-ping round trip", "s", ping_a, "qemu-ga guest-ping round trip", ping_q)
        for f in sorted(set(failures)):
            self.t.notes.append(f"attach latency: {f}")

    # -- login overhead

    def attach_login_user(self):
        args = ["attach", "--json", "--replace", "--shell", "/bin/bash", "--ssh-key", self.user_key + ".pub"]
        if self.export_available:
            p = self.vmuser_run(*args, self.vm_dir, LOGIN_USER)
            if p.returncode == 0:
                tag = json.loads(p.stdout.strip().splitlines()[-1]).get("homeTag", "none named")
                self.home_kind = f"the real virtiofs export (vmuser attach default, tag {tag})"
            else:
                self.t.notes.append(f"real home export failed, tmpfs stand-in used: {(p.stdout + p.stderr).strip()[:300]}")
                self.vmuser_run("detach", "--force", self.vm_dir, LOGIN_USER)
        if not self.export_available or p.returncode != 0:
            p = self.vmuser_run(*args, *self.home_args, self.vm_dir, LOGIN_USER)
        if p.returncode != 0:
            raise RuntimeError(f"vmuser attach {LOGIN_USER} failed: {(p.stdout + p.stderr).strip()}")
        reply = json.loads(p.stdout.strip().splitlines()[-1])
        self.login_uid = int(reply["uid"])
        self.login_home = reply["homeDirectory"]

    def count_mounts(self, since, service):
        """pam_vmuser's "Mounted ..." journal lines for LOGIN_USER from one PAM service."""
        out = self.g.run(f"journalctl -q -o cat --since @{int(since)} | "
                         f"grep -c '({service}:session): Mounted .* for {LOGIN_USER}\\.' || true")
        return int(out.strip() or 0)

    def login_overhead(self):
        sec = "login overhead (attached user, home mounted at login, vs local user)"
        self.attach_login_user()
        n = self.reps * 3
        log(f"login overhead: pamtester x{n} per user, ssh login x{self.reps} per user (+{self.warm} warm-up)")
        since = float(self.g.run("date +%s.%N").strip())
        out = self.g.run(f"""
for i in $(seq {n + self.warm}); do
    for u in {LOGIN_USER} {LOCAL_USER}; do
        t0=$EPOCHREALTIME; pamtester {PAM_SERVICE} $u open_session close_session >/dev/null 2>&1; rc=$?
        t1=$EPOCHREALTIME; [ $i -le {self.warm} ] || echo "$u $rc $t0 $t1"
    done
done
""")
        res, bad = timed_pairs(out)
        mounts = self.count_mounts(since, PAM_SERVICE)
        note = (f"home: {self.home_kind}; pam_vmuser logged {mounts} mounts for "
                f"{n + self.warm} sessions of {LOGIN_USER}")
        if bad:
            note += f"; failed runs: {bad}"
        self.t.add(sec, "pamtester open+close_session, attached user", "s", res.get(LOGIN_USER),
                   "same, local user", res.get(LOCAL_USER), note)

        # ssh login to the shell prompt, cold each time: the user's manager (user@UID.service)
        # is stopped first, and the attached user's home unmounted. A pamtester session does the
        # unmount: it prunes the dead session entry that the user manager leaves behind (see
        # stale below) and unmounts at its close.
        logins = {LOGIN_USER: [], LOCAL_USER: []}
        fails = []
        stale = 0
        since = float(self.g.run("date +%s.%N").strip())
        home = shlex.quote(self.login_home)
        for r in range(self.warm + self.reps):
            for user, uid in ((LOGIN_USER, self.login_uid), (LOCAL_USER, self.local_uid)):
                out = self.g.run(f"""
systemctl stop user@{uid}.service 2>/dev/null || true
if [ {user} = {LOGIN_USER} ]; then
    findmnt -rn {home} >/dev/null && echo stale
    pamtester {PAM_SERVICE} {LOGIN_USER} open_session close_session >/dev/null 2>&1
    findmnt -rn {home} >/dev/null && echo still-mounted
fi
true
""")
                stale += "stale" in out.split()
                if "still-mounted" in out.split():
                    fails.append("home still mounted before a login")
                try:
                    dt = self.ssh_to_prompt(user)
                    if r >= self.warm:
                        logins[user].append(dt)
                except RuntimeError as e:
                    fails.append(f"{user}: {e}")
        mounts = self.count_mounts(since, "sshd")
        total = self.warm + self.reps
        note = (f"cold: user@.service stopped and home unmounted before each; sshd mounted the home "
                f"{mounts} times in {total} logins")
        if stale:
            note += (f"; in {stale} of {total} cases the home was still mounted after the user manager "
                     f"had stopped")
            self.t.notes.append(
                f"login: after {LOGIN_USER}'s user@.service stopped, its home stayed mounted ({stale} of {total} "
                f"times) and /run/vmuser/sessions/{LOGIN_USER}/ kept the entry of the user manager's PID: "
                f"the close of its systemd-user PAM session (run by '(sd-pam)', another PID) did not remove "
                f"it. The bench unmounts with a pamtester session before each login.")
        if fails:
            note += f"; failures: {'; '.join(sorted(set(fails)))[:300]}"
        self.t.add(sec, "ssh login to shell prompt, attached user", "s", logins[LOGIN_USER],
                   "same, local user", logins[LOCAL_USER], note)

    def ssh_to_prompt(self, user, timeout=90):
        argv = self.g.ssh_argv(user=user, key=self.user_key, tty=True)
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        buf = b""
        try:
            while True:
                left = timeout - (time.perf_counter() - t0)
                if left <= 0:
                    raise RuntimeError(f"no prompt within {timeout} s: {buf[-200:]!r}")
                r, _, _ = select.select([p.stdout], [], [], left)
                if not r:
                    continue
                data = os.read(p.stdout.fileno(), 65536)
                if not data:
                    raise RuntimeError(f"ssh ended before a prompt (rc {p.wait()}): {buf[-300:]!r}")
                buf += data
                # The prompt ends in "$ ", maybe followed by terminal mode escapes.
                if re.search(rb"\$ (\x1b\[[?0-9;]*[a-zA-Z])*$", buf):
                    dt = time.perf_counter() - t0
                    break
            p.stdin.write(b"exit\n")
            p.stdin.flush()
            p.wait(timeout=60)
            return dt
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    # -- footprint

    def footprint(self):
        sec = "footprint (vmuser-agent vs qemu-ga, same guest)"
        pings = self.a.pings
        log(f"footprint: RSS idle, {pings:,} pipelined pings per agent, idle CPU")
        pid_a = self.g.agent_pid("vmuser-agent")
        pid_q = self.g.agent_pid("qemu-guest-agent")
        out = self.g.run(f"""
for i in 1 2 3; do
    echo "$(awk '/^VmRSS:/ {{print $2}}' /proc/{pid_a}/status) $(awk '/^VmRSS:/ {{print $2}}' /proc/{pid_q}/status)"
    sleep 1
done
""")
        idle = [tuple(map(int, line.split())) for line in out.split("\n") if line.strip()]
        rss_idle_a = [x[0] for x in idle]
        rss_idle_q = [x[1] for x in idle]
        self.t.add(sec, "vmuser-agent RSS, idle", "KiB", rss_idle_a, "qemu-ga RSS, idle", rss_idle_q)

        chunks = 4
        per = pings // chunks
        agents = (("a", self.agent_sock, pid_a), ("q", self.qga_sock, pid_q))
        res = {name: ([], [], 0) for name, _, _ in agents}
        # Interleaved (a, q, a, q, ...) after one unrecorded warm-up block each, as README says:
        # noise hits both alike, and neither side pays the other's cold start.
        try:
            with QgaClient(self.agent_sock, timeout=60) as ca, QgaClient(self.qga_sock, timeout=60) as cq:
                clients = {"a": ca, "q": cq}
                for c in clients.values():
                    c.sync()
                for block in range(1 + chunks):
                    for name, sock, pid in agents:
                        secs, err = clients[name].ping_stream(per, window=PING_WINDOW)
                        if block == 0:
                            continue  # warm-up
                        rss, rate, errors = res[name]
                        rss.append(self.g.rss_kib(pid))
                        rate.append(per / secs)
                        res[name] = (rss, rate, errors + err)
        except (QgaError, OSError) as e:
            self.t.notes.append(f"ping streams: {e}")
        note = (f"1 warm-up + {chunks} x {per:,} guest-ping per agent, interleaved, {PING_WINDOW} in flight; "
                f"RSS read after each block")
        errs = {k: v[2] for k, v in res.items() if v[2]}
        if errs:
            note += f"; error replies: {errs}"
        self.t.add(sec, f"vmuser-agent RSS after {chunks * per:,} requests", "KiB", res["a"][0],
                   "vmuser-agent RSS, idle (before)", rss_idle_a, note)
        self.t.add(sec, f"qemu-ga RSS after {chunks * per:,} requests", "KiB", res["q"][0],
                   "qemu-ga RSS, idle (before)", rss_idle_q)
        self.t.add(sec, f"vmuser-agent RSS after {chunks * per:,} requests", "KiB", res["a"][0],
                   f"qemu-ga RSS after {chunks * per:,} requests", res["q"][0])
        self.t.add(sec, "vmuser-agent pipelined guest-ping rate", "req/s", res["a"][1],
                   "qemu-ga pipelined guest-ping rate", res["q"][1])

        # Idle CPU, no host connected to either port.
        windows = 3
        out = self.g.run(f"""
tck=$(getconf CLK_TCK)
cpu() {{ awk '{{print $14 + $15}}' /proc/$1/stat; }}
for i in $(seq {windows}); do
    a0=$(cpu {pid_a}); q0=$(cpu {pid_q}); sleep 10; a1=$(cpu {pid_a}); q1=$(cpu {pid_q})
    echo "$(( (a1 - a0) * 1000 / tck )) $(( (q1 - q0) * 1000 / tck ))"
done
""", timeout=120)
        vals = [tuple(map(int, line.split())) for line in out.split("\n") if line.strip()]
        self.t.add(sec, "vmuser-agent CPU while idle (no host connected)", "ms/10s", [v[0] for v in vals],
                   "qemu-ga CPU while idle", [v[1] for v in vals],
                   "utime+stime over 10 s windows, clock-tick resolution")

    # -- bulk

    def getent_group_miss(self, reps):
        """Times `getent group vbnosuch` (a name found nowhere) in the guest: reps values."""
        out = self.g.run(f"""
for i in $(seq {reps + self.warm}); do
    t0=$EPOCHREALTIME; getent group vbnosuch >/dev/null; rc=$?; rc=$((rc == 2 ? 0 : rc))
    t1=$EPOCHREALTIME; [ $i -le {self.warm} ] || echo "vbnosuch $rc $t0 $t1"
done
""")
        res, bad = timed_pairs(out)
        return res.get("vbnosuch"), bad

    def bulk(self):
        sec = f"bulk ({self.a.users:,} users in one vmuser attach)"
        n = self.a.users
        # The peers, in the state ours starts from (before the bulk: no bulk records in
        # nss-systemd, which useradd enumerates through NSS and would be slowed by).
        k = self.a.peer_users
        etc_files = "/etc/passwd /etc/group /etc/shadow /etc/gshadow"
        etc0 = int(self.g.run(f"cat {etc_files} | wc -c").strip())
        out = self.g.run(f"""
for i in $(seq {k}); do
    t0=$EPOCHREALTIME
    groupadd vbp$i && useradd -M -N -g vbp$i -s /bin/bash -p '{self.hash}' vbp$i; rc=$?
    echo "u $rc $t0 $EPOCHREALTIME"
done
""", timeout=1800)
        peer_res, _ = timed_pairs(out)
        peer_rate = [len(peer_res.get("u", [])) / sum(peer_res["u"])] if peer_res.get("u") else []
        etc_per_user = (int(self.g.run(f"cat {etc_files} | wc -c").strip()) - etc0) / k
        log(f"bulk: agent restarted with UID range {BULK_RANGE[0]}-{BULK_RANGE[1]}, {n:,} users")
        self.g.run(f"""
set -e
install -d /run/systemd/system/vmuser-agent.service.d
cat >/run/systemd/system/vmuser-agent.service.d/range.conf <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/sbin/vmuser-agent --device /dev/virtio-ports/org.vmuser.agent.0 --host-mounts --uid-min {BULK_RANGE[0]} --uid-max {BULK_RANGE[1]}
EOF
systemctl daemon-reload
systemctl restart vmuser-agent
for i in $(seq 30); do systemctl is-active -q vmuser-agent && break; sleep 1; done
grep -q -- '--uid-min' /proc/$(systemctl show -P MainPID vmuser-agent)/cmdline
""")
        # /run is a tmpfs of 10% of the guest's RAM, and every record file takes at least a page:
        # make room for the bulk, and measure what each user takes.
        run_size = int(self.g.run("df --output=size -k /run | tail -1").strip())
        self.g.run("mount -o remount,size=50% /run")
        run_used0 = int(self.g.run("df --output=used -k /run | tail -1").strip())
        st = self.vmuser_run("status", self.vm_dir)
        if st.returncode != 0:
            raise RuntimeError(f"vmuser status after the agent restart: {st.stdout}{st.stderr}")
        pid_a = self.g.agent_pid("vmuser-agent")
        rss_fresh = [self.g.rss_kib(pid_a)]
        names = [f"{BULK_PREFIX}{i:05d}" for i in range(1, n + 1)]
        # The probe user: attached before the bulk, its lookups timed with no other user attached
        # and again after the bulk (issue 14: at most 1.5x).
        probe = f"{BULK_PREFIX}00000"
        self.hostdb.set_users(self.host_users + [(probe, BULK_HOST_UID_BASE + n + 1, "/nonexistent")])
        pr = self.vmuser_run("attach", "--no-authorized-keys", *self.home_args, self.vm_dir, probe)
        if pr.returncode != 0:
            raise RuntimeError(f"attaching the probe user {probe}: {pr.stdout}{pr.stderr}")
        probe0, probe0_bad = self.probe_lookups(probe, self.reps * 3)
        self.bulk_budget = self.a.bulk_budget
        if self.bulk_budget is None:  # automatic: what is left of RUN_TARGET
            self.bulk_budget = max(60, int(RUN_TARGET - BULK_RESERVE - (time.time() - self.a.t_start)))
        self.hostdb.set_users(self.host_users + [(probe, BULK_HOST_UID_BASE + n + 1, "/nonexistent")] +
                              [(nm, BULK_HOST_UID_BASE + i, "/nonexistent") for i, nm in enumerate(names)])
        # The agent's own CPU time over the bulk (utime + stime of /proc/PID/stat, in ticks): with
        # the requests pipelined, what the guest spends per user is what bounds the rate.
        # Also split: the agent's user and system time, systemd-journald's (the agent's audit
        # entries), and the whole guest's busy time over all vCPUs (/proc/stat: all but idle+iowait).
        agent_cpu = (f"echo $(awk '{{print $14 + $15, $14, $15}}' /proc/{pid_a}/stat) $(getconf CLK_TCK) "
                     f"$(awk '{{print $14 + $15}}' /proc/$(pidof systemd-journald)/stat) "
                     f"$(awk '/^cpu / {{print $2 + $3 + $4 + $7 + $8 + $9}}' /proc/stat)")
        ticks0 = self.g.run(agent_cpu).split()
        try:
            done, attached, dt, rc, first_fail, cpu = self.bulk_attach(names)
        finally:
            self.hostdb.set_users(self.host_users)
        ticks1 = self.g.run(agent_cpu).split()
        hz = int(ticks1[3])
        guest_cpu, agent_user, agent_sys, journald_cpu, guest_busy = (
            (int(ticks1[i]) - int(ticks0[i])) / hz for i in (0, 1, 2, 4, 5))
        ok = len(done)
        budget = self.bulk_budget
        stopped = rc is None
        note = f"{ok:,} of {n:,} attached in {dt:.0f} s"
        note += f", stopped at the {budget} s budget (--bulk-budget)" if stopped else f" (exit {rc})"
        note += f"; host tool CPU {cpu:.1f} s"
        if ok:
            note += f" ({cpu / ok * 1e3:.2f} ms per user)"
        note += f"; vmuser-agent CPU in the guest {guest_cpu:.1f} s"
        if ok:
            note += (f" ({guest_cpu / ok * 1e3:.2f} ms per user: user {agent_user / ok * 1e3:.2f}, "
                     f"system {agent_sys / ok * 1e3:.2f}); systemd-journald {journald_cpu / ok * 1e3:.2f} ms "
                     f"per user; the whole guest busy {guest_busy:.1f} s over its vCPUs "
                     f"({guest_busy / ok * 1e3:.2f} ms per user)")
        note += f"; --timeout {BULK_TIMEOUT}"
        if first_fail:
            note += f"; first failure: {first_fail[:200]}"
        rate = [ok / dt] if ok else []
        if stopped:
            # What the rest would take, at least: at the rate of the last tenth.
            tail = max(1, ok // 10)
            last_rate = tail / (done[-1] - done[-1 - tail]) if ok > tail else (rate[0] if rate else 0)
            rest = (n - ok) / last_rate if last_rate else None
            more = "?" if rest is None else f"{rest / 60:.0f} min" if rest >= 120 else f"{rest:.0f} s"
            why = (f" (what was left of ~{RUN_TARGET // 60} minutes for the whole run)"
                   if self.a.bulk_budget is None else "")
            self.t.notes.append(
                f"bulk: the single `vmuser attach` of {n:,} users did not finish within its {budget} s budget{why} "
                f"and was stopped after {ok:,} users; the figures after it are at {ok:,} records. The other "
                f"{n - ok:,} would take at least {more} more at the rate of the last tenth ({last_rate:.1f} "
                f"users/s); `bench/run --bulk-budget 0` runs it to the end.")

        rate_row = len(self.t.rows)
        run_used1 = int(self.g.run("df --output=used -k /run | tail -1").strip())
        run_per_user = (run_used1 - run_used0) * 1024 / ok if ok else None
        rss_after = [self.g.rss_kib(pid_a)]
        self.t.add(sec, f"vmuser-agent RSS after {ok:,} attached (one run)", "KiB", rss_after,
                   "vmuser-agent RSS, fresh start", rss_fresh)

        reps = self.reps * 3
        probe1, probe1_bad = self.probe_lookups(probe, reps)
        for what, label in (("passwd", "getent passwd USER"), ("id", "id USER")):
            bad = {**{f"{k} (after)": v for k, v in probe1_bad.items()},
                   **{f"{k} (before)": v for k, v in probe0_bad.items()}}
            self.t.add(sec, f"{label}, {probe} attached, after the bulk", "s", probe1.get(what),
                       f"the same, before the bulk (only {probe} attached)", probe0.get(what),
                       "each includes fork+exec" + (f"; failed look-ups: {bad}" if bad else ""))
        probe = attached[len(attached) // 2] if attached else names[0]
        out = self.g.run(f"""
for i in $(seq {reps + self.warm}); do
    for u in {probe} {LOCAL_USER}; do
        t0=$EPOCHREALTIME; getent passwd $u >/dev/null; rc=$?
        t1=$EPOCHREALTIME; [ $i -le {self.warm} ] || echo "$u $rc $t0 $t1"
    done
done
""")
        res, bad = timed_pairs(out)
        gnote = f"{probe} via nss-systemd ({ok:,} attached) vs {LOCAL_USER} in /etc/passwd; each includes fork+exec"
        if bad:
            gnote += f"; failed look-ups: {bad}"
        self.t.add(sec, "getent passwd, attached user", "s", res.get(probe), "getent passwd, /etc/passwd user",
                   res.get(LOCAL_USER), gnote)
        # A name that exists nowhere: what the agent's conflict checks meet on every attach; the
        # peer is the same miss before the bulk, not a hit in /etc/group.
        miss1, bad = self.getent_group_miss(reps)
        records1 = self.count_records()
        bad = {**{f"{k} ({records1:,} records)": v for k, v in bad.items()},
               **{f"{k} (at set-up)": v for k, v in self.miss0_bad.items()}}
        self.t.add(sec, f"getent group, name found nowhere, {records1:,} records", "s", miss1,
                   f"the same miss at set-up ({self.records0} records)", self.miss0,
                   f"files, then nss-systemd: the miss every attach's conflict check meets"
                   + (f"; failed look-ups: {bad}" if bad else ""))

        # Peer of the rate: the same job with the stock tools in one guest shell, on a sample
        # (useradd rewrites /etc/passwd each time), measured before the bulk (above).
        self.t.add(sec, "vmuser attach, users/s (one run, not a median)", "users/s", rate,
                   f"useradd+groupadd loop in a guest shell, {k} users, before the bulk", peer_rate,
                   note + "; one run: n=1, median = the value", at=rate_row)
        if ok >= 30:
            # The last tenth of the users against the second (the first includes start-up).
            tenth = ok // 10
            second = tenth / (done[2 * tenth - 1] - done[tenth - 1])
            last = tenth / (done[-1] - done[-1 - tenth])
            trend = ("slows down as records accumulate" if last / second < 0.8 else
                     "no slow-down as records accumulate" if last / second < 1.25 else "faster at the end")
            self.t.add(sec, f"vmuser attach, users/s, last {tenth:,} users (one run)", "users/s", [last],
                       f"same, users {tenth + 1:,}-{2 * tenth:,}", [second], trend, at=rate_row + 1)
        rss_per_user = (rss_after[0] - rss_fresh[0]) * 1024 / ok if ok and rss_after[0] and rss_fresh[0] else None
        if run_per_user and rss_per_user is not None:
            # Issue 14's goal counts what holds the records, wherever: tmpfs and the agent's memory.
            total = run_per_user + rss_per_user
            self.t.add(sec, "guest memory per attached user: /run + vmuser-agent RSS, one run", "B", [total],
                       "issue 14's goal", [2048],
                       f"/run {run_per_user:,.0f} B (tmpfs pages, df) + agent RSS growth {rss_per_user:,.0f} B "
                       f"((RSS after - RSS at a fresh start) / {ok:,} users, allocator slack of the attaches "
                       f"included)", at=rate_row + 2)
            self.t.add(sec, "vmuser-agent RSS per attached user, one run", "B", [rss_per_user],
                       "guest /run per attached user", [run_per_user],
                       "RSS: the index served to NSS (records, state) and the record store's table; /run: "
                       "records.journal", at=rate_row + 2)
        if run_per_user:
            self.t.add(sec, "guest /run per attached user: tmpfs pages used (df), one run", "B", [run_per_user],
                       "/etc/{passwd,group,shadow,gshadow} text bytes added per useradd (not blocks)", [etc_per_user],
                       "different units of cost: tmpfs pages (--userdb=varlink: records.journal, one line per "
                       "user with records and state; dropin: the drop-in files and a state file per user) vs "
                       "bytes of text in four files; "
                       f"/run is {run_size // 1024} MiB here (10% of RAM), remounted with size=50% for the bulk: at "
                       f"{run_per_user / 1024:.1f} KiB per user the default holds about "
                       f"{run_size * 1024 / run_per_user:,.0f} users", at=rate_row + 2)

    def bulk_attach(self, names):
        """One `vmuser attach` of all names, its output read line by line as it comes (stdbuf),
        stopped when --bulk-budget seconds are up. Returns (seconds at which each user was
        reported attached, elapsed, exit status or None when stopped, first failure, CPU)."""
        argv = ["stdbuf", "-oL", self.vmuser, "attach", "--json", "--timeout", str(BULK_TIMEOUT),
                "--no-authorized-keys", *self.home_args, self.vm_dir, *names]
        budget = self.bulk_budget or float("inf")
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        errf = tempfile.TemporaryFile(dir=self.work)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf)
        done, names_done, first_fail, buf, rc = [], [], None, b"", None
        progress = t0
        while True:
            left = budget - (time.perf_counter() - t0)
            if left <= 0:
                p.terminate()
                break
            r, _, _ = select.select([p.stdout], [], [], min(left, 5.0))
            if r:
                data = os.read(p.stdout.fileno(), 65536)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                now = time.perf_counter() - t0
                for line in lines:
                    if b'"result":"ok"' in line:
                        done.append(now)
                        names_done.append(json.loads(line)["userName"])
                    elif line.strip() and first_fail is None:
                        first_fail = line.decode(errors="replace")
            if time.perf_counter() - progress > 60:
                progress = time.perf_counter()
                log(f"bulk: {len(done):,} of {len(names):,} after {progress - t0:.0f} s")
        dt = time.perf_counter() - t0
        code = p.wait()
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        errf.close()
        if budget == float("inf") or dt < budget:
            rc = code
            dt = time.perf_counter() - t0
        if first_fail is None and code not in (0, -15) and err.strip():
            first_fail = err.strip().splitlines()[-1]
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return done, names_done, (done[-1] if rc is None and done else dt), rc, first_fail, cpu

    # -- home I/O (section of its own: HomeIO above)

    def home_io(self):
        HomeIO(self).run()

    # -- driver

    def run(self):
        steps = (("attach latency", self.attach_latency), ("login overhead", self.login_overhead),
                 ("footprint", self.footprint), ("bulk", self.bulk), ("home I/O", self.home_io))
        self.setup()
        for name, fn in steps:
            if self.a.only and name.split()[0] not in self.a.only:
                continue
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - one failed section must not lose the others
                log(f"{name} failed: {e}")
                self.t.failed(name, f"{name}", str(e).splitlines()[0][:200])
            log(f"{name}: {time.perf_counter() - t0:.0f} s")

    def report(self, t_start):
        head = [
            f"vmuser {self.a.version} benchmarks, {time.strftime('%Y-%m-%d %H:%M:%S %Z')} "
            f"({'quick' if self.a.quick else 'full'} run: {self.reps} repetitions, {self.a.users:,} bulk users)",
            f"host: {os.uname().nodename}, {os.cpu_count()} CPUs; guest: Debian 12 under QEMU "
            f"{self.a.accel.upper()}, {self.a.guest_desc}; qemu-ga {getattr(self, 'qga_version', '?')}",
            *([f"sections run: {', '.join(self.a.only)} only (--only); the others were not measured"]
              if self.a.only else []),
            f"medians over n runs; ratio = figure median / peer median (< 1: smaller than the peer). "
            f"Times under TCG are inflated: read the ratios.",
            "",
        ]
        text = "\n".join(head) + self.t.render() + "\n"
        notes = list(self.t.notes)
        if notes:
            text += "\nnotes:\n" + "".join(f"  - {n}\n" for n in notes)
        text += f"\nelapsed: {time.time() - t_start:.0f} s (build, image, boot and benchmarks)\n"
        return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vm-dir", required=True)
    ap.add_argument("--vmuser", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--users", type=int)
    ap.add_argument("--pings", type=int, default=100000)
    ap.add_argument("--peer-users", type=int)
    ap.add_argument("--bulk-budget", type=int,
                    help="seconds for the bulk attach; 0: no limit; default: 120 with --quick, else what is "
                         f"left of {RUN_TARGET} s for the whole run (at least 60)")
    ap.add_argument("--home-files", type=int, help="home I/O: small files to create (default 2,000)")
    ap.add_argument("--home-mib", type=int, help="home I/O: MiB to write and read (default 100)")
    ap.add_argument("--home-reps", type=int,
                    help="home I/O: rounds on each of the three directories (default 7, 3 with --quick)")
    ap.add_argument("--only", action="append", choices=["attach", "login", "footprint", "bulk", "home"],
                    help="run only this section (repeatable; for working on the bench)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--version", default="unknown", help="what was built (git describe)")
    ap.add_argument("--guest-desc", default="q35, 2 vCPUs, 1 GiB")
    ap.add_argument("--t-start", type=float, default=time.time())
    a = ap.parse_args()
    a.reps = a.reps or (3 if a.quick else 10)
    a.users = a.users or (1000 if a.quick else 10000)
    a.peer_users = a.peer_users or (20 if a.quick else 50)
    a.home_files = a.home_files or 2000
    a.home_mib = a.home_mib or 100
    a.home_reps = a.home_reps or (3 if a.quick else 7)
    if a.bulk_budget is None and a.quick:
        a.bulk_budget = 120
    if os.geteuid() != 0:
        sys.exit("bench.py: must run as root")
    b = Bench(a)
    try:
        b.run()
        text = b.report(a.t_start)
    finally:
        b.cleanup()
    with open(a.out, "w") as fh:
        fh.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
