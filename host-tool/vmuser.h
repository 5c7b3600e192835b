/* vmuser.h: what the files of the host tool share.
 *
 * main.c parses the command line into one of the option structs below and calls the matching
 * *_run(); the subcommand does its work, prints its results, logs its errors once, and returns
 * an outcome; main.c maps the outcome to the exit code documented in vmuser(1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host-user.h"
#include "verr.h"

/* Default per-request timeout (connect, sync, and each request on its own). */
#define VMUSER_TIMEOUT_MS_DEFAULT 5000

/* How long attach waits for the agent behind a channel it has just hot-plugged (the port shows
 * up in the guest, udev starts vmuser-agent). */
#define VMUSER_HOTPLUG_AGENT_WAIT_MS 60000

enum outcome {
        OUTCOME_OK,
        OUTCOME_FAILED,      /* a local error on the host (out of memory, I/O) */
        OUTCOME_USAGE,       /* the command line is wrong */
        OUTCOME_UNREACHABLE, /* no agent to talk to, or it does not speak the protocol */
        OUTCOME_REFUSED,     /* the agent answered with an error */
        OUTCOME_BUSY,        /* the agent refused because the user has sessions */
        OUTCOME_PARTIAL,     /* some users of a batch succeeded, some failed */
        OUTCOME_HOST_USER,   /* the host user does not exist or may not be shared */
        _OUTCOME_MAX,
};

/* The word used for an outcome in --json output ("ok", "refused", ...). */
const char *outcome_to_string(enum outcome o);

struct vm;
struct qga_client;
struct json_object;
struct home_export_info;

/* Where a batch's per-user results go instead of stdout/stderr (apply.c collects them): fields
 * as report_success() has them (borrowed, may be NULL) on success, else the reason and, for a
 * refusal by the agent, its error class. */
typedef void (*report_sink_fn)(void *userdata, const char *user, enum outcome o, struct json_object *fields,
                               const char *reason, const char *error_class);

struct common_options {
        const char *vm;           /* directory, bare name, or libvirt:DOMAIN (vm.h) */
        const char *connect_uri;  /* --connect: libvirt URI; VM is then a domain name */
        const char *agent_socket; /* --agent, overrides VM/agent.sock */
        const char *qmp_socket;   /* --qmp, overrides VM/qmp.sock */
        int timeout_ms;
        bool json;
        /* apply.c: a VM it has opened (the subcommand neither opens nor closes one), the agent
         * connection it holds for that VM (NULL inside: opened on demand and handed back), and
         * where the results go. All NULL for the command line's own subcommands. */
        struct vm *opened_vm;
        struct qga_client **shared_agent;
        report_sink_fn sink;
        void *sink_userdata;
};

struct attach_options {
        struct common_options common;
        char **users;
        size_t n_users;
        const char *home_dir;      /* --home-dir, may contain %u */
        enum host_user_shell shell;
        const char *shell_path;
        bool has_uid;
        uint32_t uid;
        char **groups;             /* NULL-terminated */
        char **ssh_key_files;      /* NULL-terminated */
        bool no_password;
        bool no_authorized_keys;
        const char *home_tag;      /* --home-tag, may contain %u: send a spec, export nothing */
        const char *home_fstype;   /* --home-fstype, default virtiofs */
        const char *home_source;   /* --home-source, may contain %u; default: the host home */
        bool read_only;            /* --read-only */
        bool no_home;              /* neither export nor spec */
        bool replace;
        bool persistent;           /* --persistent: libvirt: also add the channel to the stored XML */
        /* apply --check: push the record without "replace" and export nothing. For a user the
         * agent already lists this writes nothing in the guest: an identical record comes back
         * changed=false, a different one is refused (attach_refusal_is_difference()). */
        bool probe;
};

struct detach_options {
        struct common_options common;
        char **users;
        size_t n_users;
        bool force;
};

/* Checks what main.c cannot see by itself (per-user expansions of %u); a failure is a usage
 * error. */
int attach_check_options(const struct attach_options *o, struct verr *e);

/* Replaces "%u" with name and "%%" with "%" in tmpl. */
int template_expand(const char *tmpl, const char *name, char **ret);
bool template_has_user(const char *tmpl);

/* Whether a vmuser-attach refusal (its desc) says the user is attached with another record. */
bool attach_refusal_is_difference(const char *desc);

/* list.c: one vmuser-list entry, checked (the guest is not trusted). */
struct listed_user {
        const char *name;
        uint32_t uid;
        uint32_t gid;
        const char *home_directory;
        struct json_object *home; /* home spec or NULL */
        bool mounted;
        uint32_t sessions;
        int64_t attached_usec;
        const struct home_export_info *export; /* host side, NULL: none */
};
int list_check_entry(struct json_object *o, size_t i, struct listed_user *ret, struct verr *e);

enum outcome attach_run(const struct attach_options *o);
enum outcome detach_run(const struct detach_options *o);
enum outcome list_run(const struct common_options *o);
enum outcome status_run(const struct common_options *o);

struct apply_options {
        const char *manifest;  /* path, "-" for stdin */
        const char *connect_uri;
        int timeout_ms;
        unsigned jobs;
        bool check;
        bool diff;
        bool json;
        bool no_prune;
};
/* apply.c: exit status directly (0 done or nothing to do, 1 some VM failed, 2 --check found
 * changes or a usage/manifest error) */
int apply_run(const struct apply_options *o);
