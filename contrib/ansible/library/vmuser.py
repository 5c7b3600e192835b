#!/usr/bin/python3
# -*- coding: utf-8 -*-
# vmuser.py: the Ansible module `vmuser`: converge the VMs of one hypervisor to a manifest by
# running `vmuser apply --json` there. Check mode is `vmuser apply --check`, diff mode shows the
# users that change, and `changed` is what vmuser reports (a user added, replaced or removed on
# some VM), so a second run with nothing to do reports changed=false.
#
# The flow: the manifest (YAML data in the playbook, or a file on the hypervisor) -> a 0600 JSON
# file in a private temporary directory -> vmuser apply --json [--check] [...] -> one JSON
# object per VM on stdout -> the module's result. Exit status 1 (some VM or user failed) fails
# the task, with the per-VM results still returned.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vmuser
short_description: Put host users into running VMs with vmuser apply
description:
  - Runs C(vmuser apply --json) on the host it runs on (a hypervisor), which attaches the host
    users a manifest declares to the running VMs it names, replaces those that changed, and
    detaches users vmuser attached that are no longer declared. See vmuser-apply(5).
  - Supports check mode (C(vmuser apply --check)) and diff mode.
options:
  manifest:
    description:
      - The manifest as data (the JSON object of vmuser-apply(5), written in YAML).
      - Exactly one of I(manifest) and I(manifest_file) is required.
    type: dict
  manifest_file:
    description: Path of a manifest file on the hypervisor.
    type: path
  prune:
    description: Detach users vmuser attached that the manifest does not declare.
    type: bool
    default: true
  jobs:
    description: At most this many VMs at a time (vmuser's default is 16).
    type: int
  connect:
    description: libvirt URI for libvirt:PATTERN entries.
    type: str
  timeout:
    description: Per-request timeout in seconds.
    type: float
  vm_dir:
    description: Where bare VM names are looked up (sets VMUSER_VM_DIR; default /run/vmuser/vm).
    type: path
  executable:
    description: The vmuser command.
    type: path
    default: vmuser
author: vmuser
"""

EXAMPLES = r"""
- name: Web developers on every web VM, alice with sudo on web01
  vmuser:
    manifest:
      vms:
        - vm: "web*"
          users: [{group: webdev}]
        - vm: web01
          users: [{user: alice, groups: [sudo], shell: "yes"}]
"""

RETURN = r"""
vms:
  description: One object per VM as vmuser apply --json reports it (vm, added, replaced,
    removed, unchanged, pending, failed, error, changed).
  type: list
  returned: always
summary:
  description: Counts over all VMs (added, replaced, removed, unchanged, pending, failed, vms_failed).
  type: dict
  returned: always
"""

import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

KINDS = (("added", "+"), ("replaced", "~"), ("removed", "-"), ("pending", "!"), ("failed", "x"))


def user_of(item):
    return item.get("userName", "?") if isinstance(item, dict) else str(item)


def diff_text(vms):
    lines = []
    for vm in vms:
        name = vm.get("vm", "?")
        if vm.get("error"):
            lines.append("x %s (%s)" % (name, vm["error"]))
        for key, mark in KINDS:
            for item in vm.get(key) or []:
                reason = item.get("reason") if isinstance(item, dict) else None
                lines.append("%s %s %s%s" % (mark, name, user_of(item), " (%s)" % reason if reason else ""))
    return "\n".join(lines) + ("\n" if lines else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            manifest=dict(type="dict"),
            manifest_file=dict(type="path"),
            prune=dict(type="bool", default=True),
            jobs=dict(type="int"),
            connect=dict(type="str"),
            timeout=dict(type="float"),
            vm_dir=dict(type="path"),
            executable=dict(type="path", default="vmuser"),
        ),
        mutually_exclusive=[["manifest", "manifest_file"]],
        required_one_of=[["manifest", "manifest_file"]],
        supports_check_mode=True,
    )
    p = module.params

    exe = p["executable"]
    if os.sep not in exe:
        exe = module.get_bin_path(exe, required=True)

    tmpdir = None
    try:
        if p["manifest"] is not None:
            tmpdir = tempfile.mkdtemp(prefix="vmuser-apply-")
            path = os.path.join(tmpdir, "manifest.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(p["manifest"], f)
        else:
            path = p["manifest_file"]

        cmd = [exe, "apply", "--json"]
        if module.check_mode:
            cmd.append("--check")
        if not p["prune"]:
            cmd.append("--no-prune")
        if p["jobs"] is not None:
            cmd += ["--jobs", str(p["jobs"])]
        if p["connect"]:
            cmd += ["--connect", p["connect"]]
        if p["timeout"] is not None:
            cmd += ["--timeout", str(p["timeout"])]
        cmd.append(path)

        env = {"VMUSER_VM_DIR": p["vm_dir"]} if p["vm_dir"] else None
        rc, out, err = module.run_command(cmd, environ_update=env)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    vms = []
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            vms.append(json.loads(line))
        except ValueError:
            module.fail_json(msg="vmuser apply printed a line that is not JSON: %s" % line[:200], rc=rc,
                             stdout=out, stderr=err, cmd=cmd)

    summary = dict(added=0, replaced=0, removed=0, unchanged=0, pending=0, failed=0, vms_failed=0)
    for vm in vms:
        for key in ("added", "replaced", "removed", "unchanged", "pending", "failed"):
            summary[key] += len(vm.get(key) or [])
        if vm.get("error") or vm.get("failed"):
            summary["vms_failed"] += 1
    changed = summary["added"] + summary["replaced"] + summary["removed"] > 0

    # not "rc": Ansible fails any task whose result has a non-zero rc, and 2 is --check's "would change"
    result = dict(changed=changed, vms=vms, summary=summary, exit_status=rc, cmd=cmd, stderr=err)
    if module._diff:
        text = diff_text(vms)
        result["diff"] = dict(prepared=text) if text else dict(before="", after="")

    # 0: done or nothing to do; 2 with --check: something would change.
    if rc == 0 or (rc == 2 and module.check_mode and vms):
        module.exit_json(**result)
    failed_vms = [vm.get("vm", "?") for vm in vms if vm.get("error") or vm.get("failed")]
    msg = "vmuser apply failed (exit status %d)" % rc
    if failed_vms:
        msg += " on %d VM(s): %s" % (len(failed_vms), ", ".join(failed_vms[:20]))
    if err.strip():
        msg += ": " + err.strip().splitlines()[-1]
    module.fail_json(msg=msg, **result)


if __name__ == "__main__":
    main()
