/* names.h: which user/group names and IDs vmuser accepts.
 *
 * Names follow the strict POSIX-portable rule also used by useradd's default: [a-z_][a-z0-9_-]*
 * with an optional trailing '$' omitted, at most 31 characters. IDs exclude root, nobody, the
 * 16/32-bit "-1" values, and must lie in the range the agent was configured with. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define VMUSER_NAME_MAX 31

/* Default UID/GID range: systemd's range for users bound into containers and VMs
 * (docs/UIDS-GIDS.md, "--bind-user="), 60514..60577. */
#define VMUSER_UID_MIN_DEFAULT 60514u
#define VMUSER_UID_MAX_DEFAULT 60577u

bool name_is_valid(const char *name);

/* Names vmuser never installs or removes, whatever the range: root, nobody and friends. */
bool name_is_reserved(const char *name);

/* True for IDs no user may have: 0, 65534 (nobody), 65535 and 4294967295. */
bool id_is_special(uint32_t id);

/* Parses a decimal ID (no sign, no spaces, no leading zeros beyond "0"). */
int id_parse(const char *s, uint32_t *ret);
