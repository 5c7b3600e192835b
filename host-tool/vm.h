/* vm.h: the VM argument of the command line -> an open VM backend (libvmuser/vm-backend.h).
 *
 * VM is a libvirt domain ("libvirt:DOMAIN", or any VM argument with --connect URI), or a bare
 * QEMU: a directory holding agent.sock and qmp.sock (an argument containing '/', and "." and
 * "..") or a bare name looked up as $VMUSER_VM_DIR/NAME (default /run/vmuser/vm/NAME); --agent
 * and --qmp override either socket of a bare QEMU. Which backend it is stays in here and in the
 * backend: the subcommands see the generic facts below and call vm_backend_*(). */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include "qga-client.h"

#include "verr.h"
#include "vm-backend.h"
#include "vmuser.h"

struct vm {
        char label[256];        /* what messages call the VM: the argument as given */
        struct vm_backend *backend;
        struct vm_backend_info info; /* as found when opening */
        /* A directory that exists while the VM does (a bare QEMU's runtime directory), so that a
         * missing one can be told apart from a missing socket; "" when there is none. */
        char dir[PATH_MAX];
};

/* Opens the VM of o->vm. A relative directory is made absolute (the home export keeps state
 * below it and insists on that). On failure e says why. */
int vm_open(const struct common_options *o, struct vm *ret, struct verr *e);
void vm_close(struct vm *v);

/* The VM and agent connection a batch subcommand (attach, detach) works with: apply.c's
 * (o->opened_vm, o->shared_agent) when it lends them, else the VM opened here and no agent yet.
 * A failure is logged; the return is its outcome, OUTCOME_OK otherwise. */
enum outcome vm_acquire(const struct common_options *o, struct vm *ret_vm, struct qga_client **ret_agent);
/* The reverse: the agent goes back to apply.c (or is closed), a VM opened here is closed. */
void vm_release(const struct common_options *o, struct vm *vm, struct qga_client *agent);

/* The outcome of a failed vm_open(): usage for a malformed argument, unreachable for a VM (or
 * libvirt) that cannot be found or reached. */
enum outcome vm_open_outcome(int r);

/* Whether agent_r (agent_open()'s failure) and the backend's facts prove the VM gone, with every
 * user of its guest: what is left of its users is on this host only (see vm.c). */
bool vm_is_gone(const struct vm *vm, int agent_r);
