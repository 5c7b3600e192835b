/* attach.h: what attach.c (the steps of a batch) and attach-report.c / attach-options.c share.
 * The flow is at the top of attach.c. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "home-export.h"
#include "home-spec.h"
#include "host-user.h"
#include "output.h"
#include "qga-client.h"
#include "vm.h"
#include "vmuser.h"

/* Users of a batch on their way at once: at most this many requests in flight on the agent
 * connection (vmuser-agent takes 256 pipelined, qemu-ga about 128). */
#define ATTACH_WINDOW 64
/* A full window makes room for this many at once, whose requests leave in one write. */
#define ATTACH_SEND_CHUNK QGA_CLIENT_CORK_REQUESTS

struct attach_batch {
        const struct attach_options *o;
        struct host_user_db db;   /* the batch's NSS look-ups (host-user.h) */
        struct vm vm;
        struct host_user_keys extra_keys;
        struct qga_client *agent;
        bool agent_failed;        /* connecting failed once: later users fail the same way */
        int agent_error;
        struct verr agent_verr;
        json_object *attached_before; /* --replace: the agent's vmuser-list, NULL if unknown */
        /* The VM's home exports when the batch started (read at the first user that exports):
         * one left from before a guest reboot fixes the guest UID to ask for. */
        struct home_export_info *exports_before;
        size_t n_exports_before;
        bool exports_listed;
        struct report report;
        struct attach_job *current; /* the job being reported, for the audit entry */
        /* The users on their way, in argv order: window_n of them from window_first (a ring). */
        struct attach_job *window;
        size_t window_first, window_n;
        /* How many may be on their way: ATTACH_WINDOW, or 1 when the batch exports homes. An
         * export takes long enough (virtiofsd, hot-plug) that the replies of the users behind it
         * would outlive their --timeout unread, and a failed export's undo needs a channel with
         * nothing else in flight; record-only batches are the ones that gain from the window. */
        size_t window_max;
};

/* One user's way through the steps. */
struct attach_job {
        const char *name;
        size_t step;              /* the next step to run (attach.c's steps[]) */
        int r;                    /* < 0: the step before step failed */
        int64_t request_id;       /* the vmuser-attach in flight */
        struct host_user *host;
        json_object *record;
        json_object *home;        /* home spec, NULL: none */
        char *source;             /* the directory to export, NULL: no export */
        /* the agent's answer */
        uint32_t uid;
        uint32_t gid;
        char home_directory[HOME_PATH_MAX + 1];
        bool changed;
        bool created;             /* this push made the user: its undo may detach it */
        /* the export */
        struct home_export_info export;
        bool exported;
        bool export_existed;
        bool source_allows_setuid; /* the export's source is on a file system mounted without nosuid */
        /* why it failed */
        enum outcome outcome;
        struct qga_error qerr;
        bool remote;
        struct verr e;
        char note[1024];          /* what the undo did, appended to the reason */
};

/* attach-options.c: whether attach exports the host home (the default), or only sends what the
 * options say; the home spec sent for user name (*ret NULL: none). */
bool attach_exports(const struct attach_options *o);
/* Whether the batch's agent connection is corked (qga_client_cork): pipelined, more than one
 * user (one user's request goes out when it is sent, as it always did). */
bool attach_corks(const struct attach_batch *b);
int attach_build_home_spec(const struct attach_options *o, const char *name, json_object **ret, struct verr *e);

/* attach-report.c: the audit entry of the user being reported (report.on_result), and the
 * result of a user that went through every step. */
void attach_audit(void *userdata, const char *user, const char *result, const char *reason, json_object *fields);
void attach_report_success(struct attach_batch *b, const struct attach_job *j);

/* attach.c: the guest UID of a live export of name left from an earlier attach (1), or none (0). */
int attach_leftover_export_uid(struct attach_batch *b, const char *name, uint32_t *ret_uid);

/* attach-push.c: the steps "send" (the vmuser-attach request goes out) and "reply" (its answer
 * is awaited and checked; undo: vmuser-detach when this push created the user). */
int attach_step_send(struct attach_batch *b, struct attach_job *j);
int attach_step_reply(struct attach_batch *b, struct attach_job *j);
void attach_undo_push(struct attach_batch *b, struct attach_job *j);
