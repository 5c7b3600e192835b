/* commands.c: the agent's request path: envelope checks, the command table and its handlers.
 *
 * agent_handle_request() validates {"execute", "arguments", "id"} (nothing else), finds the
 * verb, refuses disabled ones, runs the handler, and maps its -errno + reason into a QGA error
 * object: -EBUSY becomes class UserBusy, everything else GenericError, the reason verbatim. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "atomic-file.h"
#include "audit.h"
#include "json-util.h"
#include "macro.h"
#include "session-track.h"
#include "uid-alloc.h"

static int cmd_sync(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        json_object *id;

        if (!args || !json_object_object_get_ex(args, "id", &id) || !json_object_is_type(id, json_type_int))
                return verr_set(e, -EINVAL, "guest-sync needs an integer argument 'id'");
        json_object_object_foreach(args, key, val) {
                (void) val;
                if (!streq(key, "id"))
                        return verr_set(e, -EINVAL, "unknown argument '%s'", key);
        }
        *ret = json_object_get(id);
        return 0;
}

static int cmd_ping(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        *ret = json_object_new_object();
        return *ret ? 0 : -ENOMEM;
}

static int cmd_info(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        _cleanup_json_ json_object *info = json_object_new_object();
        json_object *list = json_object_new_array();

        if (!info || !list || json_object_object_add(info, "supported_commands", list) < 0) {
                json_object_put(list);
                return -ENOMEM;
        }
        json_object_object_add(info, "version", json_object_new_string(VMUSER_VERSION));
        for (size_t i = 0; i < agent_command_count(); i++) {
                const struct agent_command *c = agent_command_at(i);
                json_object *o = json_object_new_object();
                if (!o || json_object_array_add(list, o) < 0)
                        return -ENOMEM;
                json_object_object_add(o, "enabled", json_object_new_boolean(agent_command_enabled(a, c->name)));
                json_object_object_add(o, "name", json_object_new_string(c->name));
                json_object_object_add(o, "success-response", json_object_new_boolean(true));
        }
        *ret = TAKE_PTR(info);
        return 0;
}

static int cmd_attach(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        _cleanup_(attach_request_freep) struct attach_request *req = NULL;
        _cleanup_json_ json_object *reply = NULL;
        struct attach_result result;
        int r;

        if (!args)
                return verr_set(e, -EINVAL, "vmuser-attach needs 'arguments'");
        /* The host's reservations (uid-alloc.h) are agent state, not part of the record. */
        json_object *reserved;
        if (json_object_object_get_ex(args, "reservedUids", &reserved)) {
                _cleanup_close_ int lock_fd = -1;
                r = userdb_lock(a->db, &lock_fd);
                if (r < 0)
                        return verr_set(e, r, "could not take the agent lock: %s", strerror(-r));
                r = userdb_set_reservations(a->db, reserved, e);
                if (r < 0)
                        return r;
                json_object_object_del(args, "reservedUids");
        }
        r = records_parse_attach(args, userdb_range(a->db), &req, e);
        if (r < 0)
                return r;
        r = userdb_attach(a->db, req, &result, e);
        if (r < 0)
                return r;
        if (result.changed)
                agent_audit_attached(req, &result, result.replaced);
        agent_userdb_attached(a, result.user_name, result.uid, result.gid);

        reply = json_object_new_object();
        if (!reply)
                return -ENOMEM;
        json_object_object_add(reply, "userName", json_object_new_string(result.user_name));
        json_object_object_add(reply, "uid", json_object_new_int64(result.uid));
        json_object_object_add(reply, "gid", json_object_new_int64(result.gid));
        json_object_object_add(reply, "homeDirectory", json_object_new_string(result.home_directory));
        json_object_object_add(reply, "changed", json_object_new_boolean(result.changed));
        *ret = TAKE_PTR(reply);
        return 0;
}

static int cmd_detach(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        const char *name;
        bool force = false;
        int r;

        if (!args)
                return verr_set(e, -EINVAL, "vmuser-detach needs 'arguments'");
        json_object_object_foreach(args, key, val) {
                (void) val;
                if (!streq(key, "userName") && !streq(key, "force"))
                        return verr_set(e, -EINVAL, "unknown argument '%s' for vmuser-detach", key);
        }
        r = json_get_string(args, "userName", &name);
        if (r < 0)
                return verr_set(e, -EINVAL, "argument 'userName' is %s", r == -ENOENT ? "missing" : "not a string");
        if (!name_is_valid(name))
                return verr_set(e, -EINVAL, "user name '%s' is not valid", name);
        r = json_get_bool(args, "force", &force);
        if (r == -EINVAL)
                return verr_set(e, -EINVAL, "argument 'force' must be a boolean");

        return agent_detach(a, name, force, ret, e);
}

struct list_ctx {
        struct agent *agent;
        json_object *array;
};

static int list_one(const struct attach_state *s, void *userdata) {
        struct list_ctx *c = userdata;
        json_object *o = json_object_new_object(), *home = NULL;
        int r;

        if (!o || json_object_array_add(c->array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        if (s->has_home) {
                r = home_spec_to_json(&s->home, &home);
                if (r < 0)
                        return r;
        }
        r = agent_path_is_mounted(c->agent, s->home_directory);
        int sessions = agent_user_session_count(c->agent, s);
        json_object_object_add(o, "userName", json_object_new_string(s->user_name));
        json_object_object_add(o, "uid", json_object_new_int64(s->uid));
        json_object_object_add(o, "gid", json_object_new_int64(s->gid));
        json_object_object_add(o, "homeDirectory", json_object_new_string(s->home_directory));
        json_object_object_add(o, "home", home);
        json_object_object_add(o, "homeMounted", json_object_new_boolean(r > 0));
        json_object_object_add(o, "sessions", json_object_new_int(sessions < 0 ? 0 : sessions));
        json_object_object_add(o, "attachedAt", json_object_new_int64((int64_t) s->attached_usec));
        return 0;
}

/* Optional arguments: "limit" (1..PROTO_LIST_MAX_USERS) users whose names sort "after" a name;
 * a page shorter than the limit is the last (doc/PROTOCOL.txt, section 4). */
static int cmd_list(struct agent *a, json_object *args, json_object **ret, struct verr *e) {
        _cleanup_json_ json_object *array = json_object_new_array();
        struct list_ctx c = { .agent = a, .array = array };
        const char *after = NULL;
        uint32_t limit = 0;
        int r;

        if (!array)
                return -ENOMEM;
        if (args) {
                json_object_object_foreach(args, key, val) {
                        (void) val;
                        if (!streq(key, "after") && !streq(key, "limit"))
                                return verr_set(e, -EINVAL, "unknown argument '%s' for vmuser-list", key);
                }
                r = json_get_string(args, "after", &after);
                if ((r < 0 && r != -ENOENT) || (r >= 0 && !name_is_valid(after)))
                        return verr_set(e, -EINVAL, "argument 'after' must be a user name");
                r = json_get_uint32(args, "limit", &limit);
                if ((r < 0 && r != -ENOENT) || (r >= 0 && (limit == 0 || limit > PROTO_LIST_MAX_USERS)))
                        return verr_set(e, -EINVAL, "argument 'limit' must be a number from 1 to %u", PROTO_LIST_MAX_USERS);
        }
        r = userdb_foreach_page(a->db, after, limit, list_one, &c);
        if (r < 0)
                return verr_set(e, r, "listing attached users failed: %s", strerror(-r));
        *ret = TAKE_PTR(array);
        return 0;
}

static const struct agent_command commands[] = {
        { "guest-sync", cmd_sync, 0 },
        { "guest-sync-delimited", cmd_sync, AGENT_CMD_DELIMITED },
        { "guest-ping", cmd_ping, AGENT_CMD_NO_ARGS },
        { "guest-info", cmd_info, AGENT_CMD_NO_ARGS },
        { "vmuser-attach", cmd_attach, 0 },
        { "vmuser-detach", cmd_detach, 0 },
        { "vmuser-list", cmd_list, 0 },
};

const struct agent_command *agent_command_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

size_t agent_command_count(void) {
        return ELEMENTSOF(commands);
}

const struct agent_command *agent_command_at(size_t i) {
        return i < ELEMENTSOF(commands) ? &commands[i] : NULL;
}

static bool strv_contains(char **l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

bool agent_command_enabled(const struct agent *a, const char *name) {
        /* The sync verbs stay available: without them no client can ever talk to us. */
        if (streq(name, "guest-sync") || streq(name, "guest-sync-delimited"))
                return true;
        if (a->config.allow_rpcs && !strv_contains(a->config.allow_rpcs, name))
                return false;
        return !strv_contains(a->config.block_rpcs, name);
}

static int reply_error(int r, const struct verr *e, json_object *id, char **ret_reply, size_t *ret_len) {
        const char *klass = r == -EBUSY ? "UserBusy" : "GenericError";
        int k = proto_format_error(klass, verr_text(e, r), id, ret_reply);
        if (k < 0)
                return k;
        *ret_len = strlen(*ret_reply);
        return 0;
}

int agent_handle_request(struct agent *a, json_object *request, char **ret_reply, size_t *ret_len) {
        _cleanup_json_ json_object *value = NULL;
        const struct agent_command *cmd;
        json_object *id = NULL, *args = NULL;
        struct verr e = {};
        const char *verb;
        int r;

        if (!json_object_is_type(request, json_type_object))
                return reply_error(-EINVAL, &(struct verr) { "request is not a JSON object" }, NULL, ret_reply, ret_len);
        json_object_object_get_ex(request, "id", &id);

        json_object_object_foreach(request, key, val) {
                (void) val;
                if (!streq(key, "execute") && !streq(key, "arguments") && !streq(key, "id")) {
                        verr_set(&e, -EINVAL, "unknown request member '%s'", key);
                        return reply_error(-EINVAL, &e, id, ret_reply, ret_len);
                }
        }
        r = json_get_string(request, "execute", &verb);
        if (r < 0) {
                verr_set(&e, -EINVAL, "request member 'execute' is %s", r == -ENOENT ? "missing" : "not a string");
                return reply_error(-EINVAL, &e, id, ret_reply, ret_len);
        }
        if (json_object_object_get_ex(request, "arguments", &args) && !json_object_is_type(args, json_type_object)) {
                verr_set(&e, -EINVAL, "'arguments' of '%.64s' must be an object", verb);
                return reply_error(-EINVAL, &e, id, ret_reply, ret_len);
        }

        cmd = agent_command_find(verb);
        if (!cmd) {
                verr_set(&e, -EOPNOTSUPP, "the command '%.64s' has not been found", verb);
                r = proto_format_error("CommandNotFound", e.text, id, ret_reply);
                *ret_len = r < 0 ? 0 : strlen(*ret_reply);
                return r;
        }
        if (!agent_command_enabled(a, cmd->name)) {
                verr_set(&e, -EPERM, "the command '%s' has been disabled for this instance", cmd->name);
                r = proto_format_error("CommandDisabled", e.text, id, ret_reply);
                *ret_len = r < 0 ? 0 : strlen(*ret_reply);
                return r;
        }
        if ((cmd->flags & AGENT_CMD_NO_ARGS) && args && json_object_object_length(args) > 0) {
                verr_set(&e, -EINVAL, "'%s' takes no arguments", cmd->name);
                return reply_error(-EINVAL, &e, id, ret_reply, ret_len);
        }

        r = cmd->handler(a, args, &value, &e);
        if (r < 0) {
                agent_audit_refused(cmd->name, args, r, &e);
                return reply_error(r, &e, id, ret_reply, ret_len);
        }

        _cleanup_free_ char *text = NULL;
        r = proto_format_return(value, id, &text);
        if (r < 0)
                return r;
        size_t n = strlen(text);
        if (cmd->flags & AGENT_CMD_DELIMITED) {
                char *d = malloc(n + 2);
                if (!d)
                        return -ENOMEM;
                d[0] = (char) PROTO_DELIMITER;
                memcpy(d + 1, text, n + 1);
                *ret_reply = d;
                *ret_len = n + 1;
        } else {
                *ret_reply = TAKE_PTR(text);
                *ret_len = n;
        }
        return 0;
}

static int on_frame(json_object *obj, int error, void *userdata) {
        struct agent *a = userdata;
        _cleanup_free_ char *reply = NULL;
        size_t len = 0;
        int r;

        if (error < 0) {
                char why[128];
                if (error == -EMSGSIZE)
                        snprintf(why, sizeof(why), "request exceeds the limit of %u bytes", PROTO_MAX_REQUEST_SIZE);
                else if (error == -ELOOP)
                        snprintf(why, sizeof(why), "request nests deeper than %u levels", VMUSER_JSON_MAX_DEPTH);
                else
                        snprintf(why, sizeof(why), "request is not valid JSON");
                r = proto_format_error("GenericError", why, NULL, &reply);
                if (r < 0)
                        return r;
                len = strlen(reply);
        } else {
                r = agent_handle_request(a, obj, &reply, &len);
                if (r < 0)
                        return r;
        }
        return a->send ? a->send(a, reply, len, a->send_userdata) : 0;
}

int agent_feed(struct agent *a, const void *buf, size_t len) {
        /* The requests of one read share one hold of the agent lock. */
        userdb_hold_lock(a->db, true);
        int r = proto_reader_feed(a->reader, buf, len, on_frame, a);
        userdb_hold_lock(a->db, false);
        return r;
}

void agent_reset_stream(struct agent *a) {
        proto_reader_reset(a->reader);
}

static int session_counter(const struct attach_state *s, void *userdata) {
        return agent_user_session_count(userdata, s);
}

int agent_init(struct agent *a, const struct agent_config *config) {
        int r;

        *a = (struct agent) { .config = *config };
        r = userdb_open(config->userdb_dir, config->state_dir, &config->range, &a->db);
        if (r < 0)
                return r;
        userdb_set_reserve(a->db, config->reserve_percent);
        userdb_set_cleanup_root(a->db, config->cleanup_root ? config->cleanup_root : "/");
        userdb_set_session_counter(a->db, session_counter, a);
        if (config->userdb_mode == AGENT_USERDB_VARLINK) {
                r = userdb_use_store(a->db);
                if (r < 0)
                        return r;
        }
        r = proto_reader_new(PROTO_MAX_REQUEST_SIZE, &a->reader);
        if (r < 0)
                return r;
        return 0;
}

void agent_done(struct agent *a) {
        agent_audit_flush();
        a->db = userdb_close(a->db);
        a->reader = proto_reader_free(a->reader);
}
