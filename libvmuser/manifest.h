/* manifest.h: the declared state `vmuser apply` converges VMs to (vmuser-apply(5)).
 *
 * A manifest is one JSON object:
 *
 *   {"defaults": {OPTIONS},
 *    "vms": [{"vm": PATTERN, "users": [NAME | {"user": NAME, OPTIONS} | {"group": NAME, OPTIONS}, ...]},
 *            ...]}
 *
 * PATTERN is a VM argument as attach takes it (a name under the VM directory, a directory, or
 * libvirt:DOMAIN) in which the last component may carry fnmatch(3) wildcards. OPTIONS are the
 * per-user options of attach (manifest_user_options). Parsing is strict and bounded: unknown
 * keys, wrong types, invalid names and paths, and anything over the MANIFEST_*_MAX limits are
 * refused with the key path and the value ("vms[2].users[0].shell: 'zsh' is neither yes, no
 * nor an absolute path"); nothing prints. Strings are borrowed from the parsed JSON tree, which
 * the manifest keeps until manifest_free(). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "verr.h"

#define MANIFEST_SIZE_MAX (1024 * 1024)
#define MANIFEST_VMS_MAX 4096
#define MANIFEST_USERS_MAX 4096 /* per entry */
#define MANIFEST_GROUPS_MAX 64
#define MANIFEST_KEY_FILES_MAX 16
#define MANIFEST_STRING_MAX 1024

enum manifest_shell {
        MANIFEST_SHELL_UNSET,
        MANIFEST_SHELL_GUEST_DEFAULT, /* "no" */
        MANIFEST_SHELL_FROM_HOST,     /* "yes" */
        MANIFEST_SHELL_PATH,
};

/* Unset members (NULL, -1, MANIFEST_SHELL_UNSET) fall back to "defaults", then to attach's own. */
struct manifest_user_options {
        const char *const *groups;        /* guest groups, NULL-terminated; NULL: unset */
        const char *const *ssh_key_files; /* NULL-terminated; NULL: unset */
        enum manifest_shell shell;
        const char *shell_path;
        const char *home_dir;    /* template, %u: user name */
        const char *home_tag;    /* template: send a spec for this tag, export nothing */
        const char *home_fstype; /* with home_tag */
        const char *home_source; /* template: export this instead of the host home */
        int read_only;           /* -1 unset, 0, 1 */
        int no_home;             /* "home": false */
        int no_password;
        int no_authorized_keys;
};

struct manifest_user {
        const char *name;  /* a host user, or with is_group a host group */
        bool is_group;
        struct manifest_user_options options;
};

struct manifest_vm {
        const char *pattern;
        struct manifest_user *users;
        size_t n_users;
};

struct manifest {
        json_object *root;
        struct manifest_user_options defaults;
        struct manifest_vm *vms;
        size_t n_vms;
        /* the NULL-terminated string arrays the options point to */
        const char ***arrays;
        size_t n_arrays;
};

/* Parses len bytes of text; e says what is wrong and where (key path and value). */
int manifest_parse(const char *text, size_t len, struct manifest **ret, struct verr *e);
/* Reads path ("-": stdin), at most MANIFEST_SIZE_MAX bytes, and parses it; e names the file. */
int manifest_load(const char *path, struct manifest **ret, struct verr *e);
struct manifest *manifest_free(struct manifest *m);

/* o with the unset members filled from d. */
void manifest_options_merge(struct manifest_user_options *o, const struct manifest_user_options *d);

/* Whether a VM argument is a pattern (has *, ? or [ in it). */
bool manifest_pattern_is_glob(const char *pattern);
