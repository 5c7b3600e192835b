/* agent-conn.h: opening the connection to a VM's agent, the way every subcommand needs it.
 *
 * agent_open() asks the backend for the agent socket (flags: VM_BACKEND_AGENT_*; attach lets a
 * libvirt domain without the channel get one hot-plugged), connects and synchronizes the
 * channel. When that fails the verr says in one sentence what is wrong and what to check: the
 * VM directory is missing, the socket is missing (VM not running, or started without the
 * chardev), nobody listens on it (QEMU gone, stale socket), or nothing answers (agent not
 * running in the guest). A channel that was just hot-plugged gets VMUSER_HOTPLUG_AGENT_WAIT_MS
 * for the agent in the guest to come up.
 *
 * -ENOLINK: the VM has no agent channel at all (a libvirt domain before its first attach; only
 * without VM_BACKEND_AGENT_HOTPLUG): list and status report that rather than an error. */
#pragma once

#include "qga-client.h"
#include "verr.h"
#include "vm.h"

int agent_open(const struct vm *vm, unsigned flags, int timeout_ms, struct qga_client **ret, struct verr *e);

/* vmuser-list, page by page ("limit"/"after", doc/PROTOCOL.txt section 4; one reply from an agent
 * that predates paging): *ret is the array of all entries, at most 65536. Errors as
 * qga_client_call(); -EBADMSG for pages that are not a sorted list of users. */
int agent_list_users(struct qga_client *c, int timeout_ms, json_object **ret, struct qga_error *qe, struct verr *e);
