/* vm-match.h: which VMs a manifest's VM pattern names (`vmuser apply`).
 *
 * A pattern without wildcards names one VM and is returned as it is (whether it exists is found
 * out when it is opened, where the error can say what is missing). With wildcards (*, ?, [...]
 * of fnmatch(3)) in its last component:
 *   libvirt:GLOB (or any pattern with a connect URI): the running domains of that libvirt
 *                whose names match, as "libvirt:NAME" (or NAME with a connect URI);
 *   DIR/GLOB     the subdirectories of DIR that match, as DIR/NAME;
 *   GLOB         the subdirectories of $VMUSER_VM_DIR (default /run/vmuser/vm) that match, as
 *                bare names.
 * Hidden entries never match. The result is sorted. */
#pragma once

#include <stddef.h>

#include "verr.h"

/* Appends the matches to *list (n entries, malloc'ed strings); a pattern that matches nothing
 * adds nothing. */
int vm_match(const char *pattern, const char *connect_uri, char ***list, size_t *n, struct verr *e);
