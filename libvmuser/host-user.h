/* host-user.h: a host account turned into the minimized user record vmuser-attach carries
 * (what systemd-nspawn's and systemd-vmspawn's --bind-user= do, made a tool).
 *
 * Flow: host_user_lookup() resolves the name through NSS (getpwnam_r, retried on ERANGE by
 * host_getpwnam()) and checks that the account may be shared: a portable name, not root, not a
 * system user (below UID_MIN of /etc/login.defs, 1000 when unset), with a private group of the
 * same name. host_user_build_record() then collects the secrets: the shadow hash (getspnam_r,
 * when readable and wanted; locked and empty hashes are not copied, weak methods are warned
 * about) and the SSH keys (~/.ssh/authorized_keys opened beneath the home without leaving it,
 * size-bounded, sshd's ownership rules, every line parsed as an OpenSSH public key by ssh-key.c;
 * plus keys the admin passed as files), and renders:
 *
 *   {"userName", "realName", "uid"+"gid" (only when the admin chose a guest UID),
 *    "homeDirectory", "shell" (only when asked), "disposition": "regular", "service",
 *    "memberOf", "privileged": {"hashedPassword", "sshAuthorizedKeys"}}
 *
 * The host UID never goes to the guest: the agent allocates a guest UID unless one is given.
 * Nothing here prints; warnings go through the callback in the options, refusals through verr. */
#pragma once

#include <json-c/json.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "names.h"
#include "verr.h"

/* Largest authorized_keys or key file read. */
#define HOST_USER_KEY_FILE_MAX (256u * 1024u)
/* Used when /etc/login.defs has no UID_MIN. */
#define HOST_USER_UID_MIN_DEFAULT 1000u
#define HOST_USER_SERVICE "io.vmuser.Host"

/* NSS look-up with the ERANGE retry: *ret is one malloc'ed block (the struct and its strings),
 * freed with free(). -ENOENT when the user does not exist. */
int host_getpwnam(const char *name, struct passwd **ret);

/* UID_MIN from a login.defs file (NULL: /etc/login.defs); the default when missing or unset. */
int host_uid_min(const char *login_defs, uid_t *ret);

struct host_user {
        char name[VMUSER_NAME_MAX + 1];
        uid_t uid;
        gid_t gid;
        char *real_name; /* GECOS up to the first ',', NULL when empty */
        char *home;      /* host home directory */
        char *shell;     /* host login shell, NULL when empty */
};

struct host_user *host_user_free(struct host_user *u);
void host_user_freep(struct host_user **u);

/* Resolves and checks a host user. -ENOENT: unknown; -EPERM: root, system user, reserved or
 * non-portable name, no private group. */
int host_user_lookup(const char *name, const char *login_defs, struct host_user **ret, struct verr *e);

/* The look-ups of a batch of users. A batch of more than HOST_USER_VIEW_MIN names enumerates
 * passwd and group once (and, with with_shadow, the shadow entries of its names) into an
 * nss-view.h snapshot, when nsswitch.conf (NULL: /etc/nsswitch.conf) names only "files" and
 * "systemd" for them; each user is then resolved from memory, and NSS is asked directly about
 * anything the view lacks. UID_MIN is read once. host_user_db_lookup() returns what
 * host_user_lookup() would, with the same messages. The shadow entries stay in memory until
 * host_user_db_done() wipes them: a batch that forks long-lived processes passes with_shadow
 * false. */
#define HOST_USER_VIEW_MIN 8
struct nss_view;
struct host_user_db {
        struct nss_view *view; /* NULL: every look-up asks NSS */
        const char *login_defs;
        uid_t uid_min;
};
int host_user_db_init(struct host_user_db *db, char *const *names, size_t n_names, bool with_shadow,
                      const char *nsswitch, const char *login_defs);
void host_user_db_done(struct host_user_db *db);
int host_user_db_lookup(const struct host_user_db *db, const char *name, struct host_user **ret, struct verr *e);

/* A list of SSH public key lines (authorized_keys format), deduplicated. */
struct host_user_keys {
        char **keys;
        size_t n;
};
void host_user_keys_done(struct host_user_keys *k);

typedef void (*host_user_warn_fn)(void *userdata, const char *text);

/* Adds the keys of an admin-given file (id_*.pub or authorized_keys format). No component of
 * the path may be a symlink; the file and every directory up to / must be owned by root or one
 * of owners[] and not writable by group or others (sshd's StrictModes). Every line that is not
 * blank or a comment must be an OpenSSH public key: anything else fails the file (-EINVAL, with
 * the file, line and reason in e; a private key is named as such). */
int host_user_keys_add_file(struct host_user_keys *k, const char *path, const uid_t *owners, size_t n_owners,
                            host_user_warn_fn warn, void *userdata, struct verr *e);

enum host_user_shell {
        HOST_USER_SHELL_GUEST_DEFAULT, /* omit "shell": the guest's default */
        HOST_USER_SHELL_FROM_HOST,     /* the host user's login shell */
        HOST_USER_SHELL_PATH,          /* shell_path */
};

struct host_user_options {
        const char *home_directory;  /* guest homeDirectory; NULL: /run/vmhost/home/NAME */
        enum host_user_shell shell;
        const char *shell_path;
        bool has_uid;                /* guest UID (and GID) chosen by the admin */
        uint32_t uid;
        char *const *groups;         /* memberOf, NULL-terminated, may be NULL */
        const struct host_user_keys *extra_keys; /* may be NULL */
        bool no_password;            /* do not copy the shadow hash */
        bool no_authorized_keys;     /* do not read ~/.ssh/authorized_keys */
        host_user_warn_fn warn;      /* may be NULL */
        void *warn_userdata;
        const struct host_user_db *db; /* the batch's shadow entries; NULL: getspnam */
};

/* Renders the user record (see the top of this file). */
int host_user_build_record(const struct host_user *u, const struct host_user_options *o, json_object **ret,
                           struct verr *e);

/* Overwrites the password hashes inside a record built above, before it is released. */
void host_user_record_erase(json_object *record);

/* NULL for yescrypt, gost-yescrypt, scrypt, sha512-crypt and bcrypt; else the name of the weaker
 * method ("sha256-crypt", "md5-crypt", "DES", ...). */
const char *host_hash_weakness(const char *hash);
