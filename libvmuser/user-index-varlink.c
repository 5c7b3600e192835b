/* user-index-varlink.c: io.systemd.UserDatabase answered from the index (see user-index.h).
 *
 * A lookup: varlink.c hands over the call's parameters -> check them (known names, types, our
 * "service") -> one hash chain walk by name or ID -> the reply is the stored record text wrapped
 * as {"record": ..., "incomplete": ...}; for a root peer the privileged text is spliced into the
 * record, for anyone else it is left out and "incomplete" says so. io.vmuser.GetAttachState (for
 * pam_vmuser) answers the same way from the user's stored attach state. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "user-index-internal.h"

static const char *const ERROR_NO_RECORD = "io.systemd.UserDatabase.NoRecordFound";
static const char *const ERROR_BAD_SERVICE = "io.systemd.UserDatabase.BadService";
static const char *const ERROR_CONFLICT = "io.systemd.UserDatabase.ConflictingRecordFound";
static const char *const ERROR_NO_SUCH_USER = "io.vmuser.NoSuchUser";

struct lookup {
        const char *name;
        uint32_t id;
        bool has_id;
};

/* Checks the parameters of a lookup: name_key and id_key optional, "service" must be ours when
 * given. 0: go on, 1: an error was sent. */
static int parse_lookup(struct varlink_call *call, struct user_index *idx, json_object *params, const char *name_key,
                        const char *id_key, struct lookup *ret) {
        const char *service;
        int r;

        *ret = (struct lookup) {};
        json_object_object_foreach(params, key, value) {
                (void) value;
                if (!streq(key, name_key) && !(id_key && streq(key, id_key)) && !streq(key, "service"))
                        return varlink_call_invalid_parameter(call, key) < 0 ? -ENOMEM : 1;
        }
        r = json_get_string(params, "service", &service);
        if (r == -EINVAL)
                return varlink_call_invalid_parameter(call, "service") < 0 ? -ENOMEM : 1;
        if (r >= 0 && !streq(service, idx->service))
                return varlink_call_error(call, ERROR_BAD_SERVICE, NULL) < 0 ? -ENOMEM : 1;
        r = json_get_string(params, name_key, &ret->name);
        if (r == -EINVAL)
                return varlink_call_invalid_parameter(call, name_key) < 0 ? -ENOMEM : 1;
        if (id_key) {
                r = json_get_uint32(params, id_key, &ret->id);
                if (r == -EINVAL)
                        return varlink_call_invalid_parameter(call, id_key) < 0 ? -ENOMEM : 1;
                ret->has_id = r >= 0;
        }
        return 0;
}

static int reply_record(struct varlink_call *call, const char *record, const char *privileged, bool continues) {
        _cleanup_free_ char *text = NULL;
        bool root = varlink_call_peer_uid(call) == 0;
        int n, r;

        if (privileged && root) {
                size_t len = strlen(record);
                /* record is a non-empty object: splice the section in before its closing brace. */
                n = asprintf(&text, "{\"record\":%.*s,\"privileged\":%s},\"incomplete\":false}", (int) (len - 1), record,
                             privileged);
        } else
                n = asprintf(&text, "{\"record\":%s,\"incomplete\":%s}", record, privileged ? "true" : "false");
        if (n < 0)
                return -ENOMEM;
        r = varlink_call_reply_text(call, text, continues);
        if (privileged && root)
                explicit_bzero(text, (size_t) n);
        return r;
}

static int get_record(struct varlink_call *call, json_object *params, void *userdata, bool group) {
        struct user_index *idx = userdata;
        struct user_entry *e, *by_id = NULL;
        struct lookup l;
        int r;

        r = parse_lookup(call, idx, params, group ? "groupName" : "userName", group ? "gid" : "uid", &l);
        if (r != 0)
                return r < 0 ? r : 0;

        if (!l.name && !l.has_id) {
                /* Enumeration: every record, one reply each. */
                if (!idx->all)
                        return varlink_call_error(call, ERROR_NO_RECORD, NULL);
                for (e = idx->all; e; e = e->next_all) {
                        bool last = !e->next_all || !varlink_call_more(call);
                        r = group ? reply_record(call, e->group_text, NULL, !last)
                                  : reply_record(call, e->user_text, e->privileged_text, !last);
                        if (r < 0 || last)
                                return r;
                }
                return 0;
        }

        e = l.name ? user_index_find_by_name(idx, l.name) : NULL;
        if (l.has_id)
                by_id = group ? user_index_find_by_gid(idx, l.id) : user_index_find_by_uid(idx, l.id);
        if (l.name && l.has_id && e != by_id)
                return varlink_call_error(call, e || by_id ? ERROR_CONFLICT : ERROR_NO_RECORD, NULL);
        if (!e)
                e = by_id;
        if (!e)
                return varlink_call_error(call, ERROR_NO_RECORD, NULL);
        return group ? reply_record(call, e->group_text, NULL, false)
                     : reply_record(call, e->user_text, e->privileged_text, false);
}

static int method_get_user_record(struct varlink_call *call, json_object *params, void *userdata) {
        return get_record(call, params, userdata, false);
}

static int method_get_group_record(struct varlink_call *call, json_object *params, void *userdata) {
        return get_record(call, params, userdata, true);
}

static int reply_membership(struct varlink_call *call, const char *user, const char *group, bool continues) {
        _cleanup_free_ char *text = NULL;
        /* Both are valid names (no quoting needed): checked when the index was built. */
        if (asprintf(&text, "{\"userName\":\"%s\",\"groupName\":\"%s\"}", user, group) < 0)
                return -ENOMEM;
        return varlink_call_reply_text(call, text, continues);
}

/* Sends the memberships in the order found, holding each back until the next is known, so the
 * last one goes out without "continues". */
struct membership_sender {
        struct varlink_call *call;
        const char *user, *group; /* held back */
        bool done;
};

static int membership_send(struct membership_sender *s, const char *user, const char *group) {
        int r = 0;
        if (s->done)
                return 0;
        if (s->user) {
                r = reply_membership(s->call, s->user, s->group, true);
                if (r < 0)
                        return r;
        }
        s->user = user;
        s->group = group;
        if (!varlink_call_more(s->call)) {
                /* No "more": the first one is all the caller gets. */
                s->done = true;
                s->user = NULL;
                return reply_membership(s->call, user, group, false);
        }
        return 0;
}

static int membership_finish(struct membership_sender *s) {
        if (s->done)
                return 0;
        if (!s->user)
                return varlink_call_error(s->call, ERROR_NO_RECORD, NULL);
        return reply_membership(s->call, s->user, s->group, false);
}

static int method_get_memberships(struct varlink_call *call, json_object *params, void *userdata) {
        struct user_index *idx = userdata;
        struct membership_sender s = { .call = call };
        const char *user_name = NULL;
        struct lookup l;
        int r;

        /* parse_lookup knows one name key; userName is checked here. */
        r = json_get_string(params, "userName", &user_name);
        if (r == -EINVAL)
                return varlink_call_invalid_parameter(call, "userName");
        _cleanup_json_ json_object *rest = json_object_new_object();
        if (!rest)
                return -ENOMEM;
        json_object_object_foreach(params, key, value)
                if (!streq(key, "userName") && json_object_object_add(rest, key, json_object_get(value)) < 0)
                        return -ENOMEM;
        r = parse_lookup(call, idx, rest, "groupName", NULL, &l);
        if (r != 0)
                return r < 0 ? r : 0;

        if (user_name) {
                struct user_entry *e = user_index_find_by_name(idx, user_name);
                for (size_t i = 0; e && i < e->n_member_of && r >= 0; i++)
                        if (!l.name || streq(l.name, e->member_of[i]))
                                r = membership_send(&s, e->name, e->member_of[i]);
        } else if (l.name) {
                for (struct member_link *k = idx->by_group[user_index_hash_string(l.name) & (idx->n_link_buckets - 1)]; k && r >= 0;
                     k = k->next)
                        if (streq(k->group, l.name))
                                r = membership_send(&s, k->user->name, k->group);
        } else {
                for (struct user_entry *e = idx->all; e && r >= 0; e = e->next_all)
                        for (size_t i = 0; i < e->n_member_of && r >= 0; i++)
                                r = membership_send(&s, e->name, e->member_of[i]);
        }
        if (r < 0)
                return r;
        return membership_finish(&s);
}

/* io.vmuser.GetAttachState {"userName": NAME}: the user's attach state as users/NAME.json held it,
 * "detaching": true while a detach of the user is under way; io.vmuser.NoSuchUser otherwise. */
static int method_get_attach_state(struct varlink_call *call, json_object *params, void *userdata) {
        struct user_index *idx = userdata;
        _cleanup_free_ char *text = NULL;
        struct user_entry *e;
        const char *name;

        json_object_object_foreach(params, key, value) {
                (void) value;
                if (!streq(key, "userName"))
                        return varlink_call_invalid_parameter(call, key);
        }
        if (json_get_string(params, "userName", &name) < 0)
                return varlink_call_invalid_parameter(call, "userName");
        e = name_is_valid(name) ? user_index_find_by_name(idx, name) : NULL;
        if (!e || !e->state_text)
                return varlink_call_error(call, ERROR_NO_SUCH_USER, NULL);
        if (!streq_ptr(idx->detaching, name))
                return varlink_call_reply_text(call, e->state_text, false);
        /* state_text is a non-empty object: the mark goes in before its closing brace. */
        if (asprintf(&text, "%.*s,\"detaching\":true}", (int) strlen(e->state_text) - 1, e->state_text) < 0)
                return -ENOMEM;
        return varlink_call_reply_text(call, text, false);
}

const struct varlink_method user_index_methods[] = {
        { "io.systemd.UserDatabase.GetUserRecord", method_get_user_record },
        { "io.systemd.UserDatabase.GetGroupRecord", method_get_group_record },
        { "io.systemd.UserDatabase.GetMemberships", method_get_memberships },
        { "io.vmuser.GetAttachState", method_get_attach_state },
};
const size_t user_index_n_methods = ELEMENTSOF(user_index_methods);
