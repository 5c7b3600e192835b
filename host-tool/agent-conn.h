/* agent-conn.h: opening the connection to a VM's agent, the way every subcommand needs it.
 *
 * agent_open() connects to the VM's agent socket and synchronizes the channel. When that fails
 * the verr says in one sentence what is wrong and what to check: the VM directory is missing,
 * the socket is missing (VM not running, or started without the chardev), nobody listens on it
 * (QEMU gone, stale socket), or nothing answers (agent not running in the guest). */
#pragma once

#include "qga-client.h"
#include "verr.h"
#include "vm.h"

int agent_open(const struct vm *vm, int timeout_ms, struct qga_client **ret, struct verr *e);
