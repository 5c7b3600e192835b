/* vm.h: finding a VM's sockets from the VM argument of the command line.
 *
 * VM is a directory holding agent.sock (the host end of the virtio-serial port
 * org.vmuser.agent.0) and qmp.sock (the QMP monitor), or a bare name looked up as
 * $VMUSER_VM_DIR/NAME (default /run/vmuser/vm/NAME). An argument containing '/' (and "." and
 * "..") is a directory; anything else is a name. --agent and --qmp override either socket. */
#pragma once

#include "verr.h"

struct vm {
        char *label;        /* what messages call the VM: the argument as given */
        char *dir;
        char *agent_socket;
        char *qmp_socket;
};

int vm_resolve(const char *spec, const char *agent_override, const char *qmp_override, struct vm *ret,
               struct verr *e);
void vm_done(struct vm *v);
