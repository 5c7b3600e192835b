/* home-spec.h: what the PAM module mounts on a user's home directory, and the rules for it.
 *
 * The host sends {"tag","fstype","options"} with vmuser-attach; the agent validates it with
 * home_spec_from_json() before storing it, and pam_vmuser parses the stored copy again with the
 * same function and turns it into mount(2) arguments with home_spec_mount_args(). nosuid and
 * nodev are always part of the flags: another user of the guest must not gain anything from
 * files planted on the share. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "verr.h"

#define HOME_SPEC_TAG_MAX 36       /* virtio-fs tag limit */
#define HOME_SPEC_OPTIONS_MAX 256
#define HOME_PATH_MAX 256

enum home_fstype {
        HOME_FSTYPE_VIRTIOFS,
        HOME_FSTYPE_TMPFS,
        HOME_FSTYPE_BIND,
};

struct home_spec {
        enum home_fstype fstype;
        char tag[HOME_PATH_MAX + 1];         /* virtiofs tag, tmpfs source name, or bind source path */
        char options[HOME_SPEC_OPTIONS_MAX + 1];
};

int home_spec_from_json(json_object *obj, struct home_spec *ret, struct verr *e);
/* A new JSON object with the canonical form of spec. */
int home_spec_to_json(const struct home_spec *spec, json_object **ret);

const char *home_fstype_to_string(enum home_fstype t);

/* The arguments for mount(2): source, fstype ("virtiofs", "tmpfs" or NULL for a bind), flags
 * (always with MS_NOSUID|MS_NODEV) and the data string (filesystem options, may be empty).
 * data must have room for HOME_SPEC_OPTIONS_MAX + 1 bytes. For a bind, the remount that applies
 * the flags is the caller's second step (MS_BIND alone ignores them). */
int home_spec_mount_args(const struct home_spec *spec, const char **ret_source, const char **ret_fstype,
                         unsigned long *ret_flags, char *data);

/* A home directory vmuser may mount on: absolute, normalized (no "." or ".." components, no
 * "//", no trailing '/'), at least two components deep, under /home, /run/vmhost, /var/home,
 * /srv or /mnt, printable ASCII without ':' and at most HOME_PATH_MAX bytes. */
bool home_path_is_valid(const char *path);

/* An absolute, normalized path (same rules as above but any prefix): for shells and bind sources. */
bool path_is_normalized_absolute(const char *path);
