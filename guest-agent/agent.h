/* agent.h: the guest agent's request path, shared by the daemon (main.c) and the tests/fuzzers.
 *
 * Flow: a transport (transport.c) reads bytes -> agent_feed() runs them through the QGA frame
 * reader -> each complete request goes to agent_handle_request(), which checks the envelope,
 * looks the verb up in the command table (commands.c), runs the handler and formats exactly one
 * reply -> the transport writes it. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "proto.h"
#include "records.h"
#include "userdb.h"
#include "verr.h"

/* Where nss-systemd finds the attached users: the agent's varlink service (records in one file,
 * record-store.h; the default), or drop-in files in /run/userdb. */
enum agent_userdb_mode {
        AGENT_USERDB_VARLINK,
        AGENT_USERDB_DROPIN,
};

struct agent_config {
        const char *userdb_dir;
        const char *state_dir;
        struct id_range range;
        char **allow_rpcs; /* NULL: all allowed */
        char **block_rpcs; /* NULL: none blocked */
        bool host_mounts;  /* unmount and inspect mounts in PID 1's mount namespace */
        unsigned reserve_percent; /* see userdb_set_reserve() */
        enum agent_userdb_mode userdb_mode;
        const char *varlink_socket; /* AGENT_USERDB_VARLINK/BOTH */
        const char *cleanup_root; /* NULL: "/"; see uid-cleanup.h (tests point it at a scratch tree) */
};

struct userdb_thread;

struct agent {
        struct agent_config config;
        struct userdb *db;
        struct proto_reader *reader;
        /* Replies produced by agent_feed(), for the transport to write. */
        int (*send)(struct agent *a, const char *data, size_t len, void *userdata);
        void *send_userdata;
        /* userdb-service.c: the varlink service's thread and the in-memory index it answers
         * from (NULL without the service), built from the userdb's record store. */
        struct userdb_thread *service;
};

int agent_init(struct agent *a, const struct agent_config *config);
void agent_done(struct agent *a);

/* Feeds raw bytes from the transport; calls a->send for each reply. */
int agent_feed(struct agent *a, const void *buf, size_t len);
/* The host went away: forget any partial request. */
void agent_reset_stream(struct agent *a);

/* One request object in, one reply out (malloc'ed, newline-terminated, 0xFF-prefixed for
 * guest-sync-delimited). */
int agent_handle_request(struct agent *a, json_object *request, char **ret_reply, size_t *ret_len);

/* Command table, for guest-info and the --allow-rpcs/--block-rpcs checks. */
struct agent_command {
        const char *name;
        int (*handler)(struct agent *a, json_object *args, json_object **ret, struct verr *e);
        unsigned flags;
};
#define AGENT_CMD_DELIMITED 0x1u /* reply is preceded by 0xFF */
#define AGENT_CMD_NO_ARGS 0x2u   /* refuses any argument */

const struct agent_command *agent_command_find(const char *name);
size_t agent_command_count(void);
const struct agent_command *agent_command_at(size_t i);
bool agent_command_enabled(const struct agent *a, const char *name);

/* detach.c: vmuser-detach (sessions, home, records, then the UID's leftovers). */
int agent_detach(struct agent *a, const char *name, bool force, json_object **ret, struct verr *e);

/* sessions.c: what detach and list need to know about logins. */
int agent_user_session_count(struct agent *a, const struct attach_state *s);
int agent_terminate_sessions(struct agent *a, const struct attach_state *s, struct verr *e);
int agent_release_user_manager(struct agent *a, const struct attach_state *s, struct verr *e);
int agent_unmount_home(struct agent *a, const struct attach_state *s, struct verr *e);
/* 1 when something is mounted on path (in the login namespace when host_mounts). */
int agent_path_is_mounted(struct agent *a, const char *path);

/* userdb-service.c: the varlink userdb service. agent_userdb_changed() is the one hook the
 * commands call after a successful attach or detach of name (a no-op without the service). */
int agent_userdb_service_start(struct agent *a);
void agent_userdb_changed(struct agent *a, const char *name);
/* The same after an attach that wrote uid and gid: its line is indexed without parsing it. */
void agent_userdb_attached(struct agent *a, const char *name, uint32_t uid, uint32_t gid);
void agent_userdb_service_stop(struct agent *a);
/* io.vmuser.GetAttachState reports name (NULL: nobody) as detaching. -ESRCH without the service. */
int agent_userdb_set_detaching(struct agent *a, const char *name);
/* Whether systemd handed over a listening socket (vmuser-agent.socket). */
bool agent_userdb_socket_from_systemd(void);
