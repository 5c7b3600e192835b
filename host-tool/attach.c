/* attach.c: `vmuser attach VM USER...`, push host users into a running VM.
 *
 * Each user runs through the steps below, in order; a failing step ends that user's run with an
 * outcome and a reason, the undo functions of the steps it passed run in reverse, and the batch
 * goes on with the next user. All users share one agent connection, opened when the first user
 * reaches "push" (a batch that fails on the host never touches the VM) and re-synchronized by
 * the client after any timeout.
 *
 *   1. resolve  the host user through NSS, and the policy checks (host-user.c)
 *   2. record   the minimized user record: shadow hash, SSH keys, options (host-user.c)
 *   3. home     the home spec sent with the record: --home-tag for now. The home export
 *               (idmapped mount -> virtiofsd -> QMP hot-plug) slots in here, with an undo that
 *               tears it down when the push fails.
 *   4. push     vmuser-attach over the batch's connection (qga-client.c); the reply is checked
 *               before it is believed
 *   5. report   one sentence or one JSON object per user (output.c) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-conn.h"
#include "home-spec.h"
#include "host-user.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"
#include "qga-client.h"
#include "vm.h"
#include "vmuser.h"

struct attach_batch {
        const struct attach_options *o;
        struct vm vm;
        struct host_user_keys extra_keys;
        struct qga_client *agent;
        bool agent_failed;        /* connecting failed once: later users fail the same way */
        int agent_error;
        struct verr agent_verr;
        struct report report;
};

/* One user's way through the steps. */
struct attach_job {
        const char *name;
        struct host_user *host;
        json_object *record;
        json_object *home;        /* home spec, NULL: none */
        /* the agent's answer */
        uint32_t uid;
        uint32_t gid;
        char home_directory[HOME_PATH_MAX + 1];
        bool changed;
        /* why it failed */
        enum outcome outcome;
        struct qga_error qerr;
        bool remote;
        struct verr e;
};

struct attach_step {
        const char *name;
        int (*run)(struct attach_batch *b, struct attach_job *j);
        void (*undo)(struct attach_batch *b, struct attach_job *j); /* may be NULL */
};

bool template_has_user(const char *tmpl) {
        for (const char *p = tmpl; *p; p++)
                if (p[0] == '%' && p[1] != '\0') {
                        if (p[1] == 'u')
                                return true;
                        p++;
                }
        return false;
}

int template_expand(const char *tmpl, const char *name, char **ret) {
        size_t n = 0, name_len = strlen(name);
        char *out;

        for (const char *p = tmpl; *p; p++) {
                if (p[0] == '%' && p[1] == 'u') {
                        n += name_len;
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        n++;
                        p++;
                } else
                        n++;
        }
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        n = 0;
        for (const char *p = tmpl; *p; p++) {
                if (p[0] == '%' && p[1] == 'u') {
                        memcpy(out + n, name, name_len);
                        n += name_len;
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        out[n++] = '%';
                        p++;
                } else
                        out[n++] = *p;
        }
        out[n] = '\0';
        *ret = out;
        return 0;
}

static int build_home_spec(const struct attach_options *o, const char *name, json_object **ret, struct verr *e) {
        _cleanup_json_ json_object *spec = NULL;
        _cleanup_free_ char *tag = NULL;
        struct home_spec parsed;
        int r;

        *ret = NULL;
        if (o->no_home || !o->home_tag)
                return 0;
        r = template_expand(o->home_tag, name, &tag);
        if (r < 0)
                return r;
        spec = json_object_new_object();
        if (!spec || json_object_object_add(spec, "tag", json_object_new_string(tag)) < 0 ||
            json_object_object_add(spec, "fstype", json_object_new_string(o->home_fstype ? o->home_fstype : "virtiofs")) < 0)
                return -ENOMEM;
        /* The agent checks it again; checking here turns a typo into a usage error. */
        r = home_spec_from_json(spec, &parsed, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(spec);
        return 0;
}

int attach_check_options(const struct attach_options *o, struct verr *e) {
        int r;

        if (o->has_uid && o->n_users > 1)
                return verr_set(e, -EINVAL, "--uid sets the guest UID of one user; attach one user per invocation");
        if (o->home_dir && o->n_users > 1 && !template_has_user(o->home_dir))
                return verr_set(e, -EINVAL, "--home-dir '%s' would give %zu users the same home; use %%u for the user name",
                                o->home_dir, o->n_users);
        if (o->home_tag && !o->no_home && o->n_users > 1 && !template_has_user(o->home_tag) &&
            (!o->home_fstype || streq(o->home_fstype, "virtiofs")))
                return verr_set(e, -EINVAL, "--home-tag '%s' would give %zu users the same virtiofs tag; use %%u for the "
                                            "user name", o->home_tag, o->n_users);
        for (char **g = o->groups; g && *g; g++)
                if (!name_is_valid(*g))
                        return verr_set(e, -EINVAL, "--group '%s' is not a valid group name", *g);

        for (size_t i = 0; i < o->n_users; i++) {
                const char *name = o->users[i];
                if (!name_is_valid(name))
                        continue; /* reported for that user when it is resolved */
                if (o->home_dir) {
                        _cleanup_free_ char *home = NULL;
                        r = template_expand(o->home_dir, name, &home);
                        if (r < 0)
                                return r;
                        if (!home_path_is_valid(home))
                                return verr_set(e, -EINVAL, "--home-dir: '%s' is not a normalized absolute path under "
                                                            "/home, /run/vmhost, /var/home, /srv or /mnt", home);
                }
                _cleanup_json_ json_object *spec = NULL;
                r = build_home_spec(o, name, &spec, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void warn_cb(void *userdata, const char *text) {
        log_warning("%s", text);
}

/* ---- the steps ---- */

static int step_resolve(struct attach_batch *b, struct attach_job *j) {
        int r = host_user_lookup(j->name, NULL, &j->host, &j->e);
        if (r < 0)
                j->outcome = r == -ENOENT || r == -EPERM ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        return r;
}

static int step_record(struct attach_batch *b, struct attach_job *j) {
        const struct attach_options *o = b->o;
        _cleanup_free_ char *home = NULL;
        struct host_user_options uo = {
                .shell = o->shell,
                .shell_path = o->shell_path,
                .has_uid = o->has_uid,
                .uid = o->uid,
                .groups = o->groups,
                .extra_keys = &b->extra_keys,
                .no_password = o->no_password,
                .no_authorized_keys = o->no_authorized_keys,
                .warn = warn_cb,
        };
        int r;

        if (o->home_dir) {
                r = template_expand(o->home_dir, j->name, &home);
                if (r < 0)
                        return r;
                uo.home_directory = home;
        }
        r = host_user_build_record(j->host, &uo, &j->record, &j->e);
        if (r < 0)
                j->outcome = r == -EINVAL || r == -E2BIG ? OUTCOME_HOST_USER : OUTCOME_FAILED;
        return r;
}

static int step_home(struct attach_batch *b, struct attach_job *j) {
        int r = build_home_spec(b->o, j->name, &j->home, &j->e);
        if (r < 0)
                j->outcome = r == -ENOMEM ? OUTCOME_FAILED : OUTCOME_USAGE;
        return r;
}

static int ensure_agent(struct attach_batch *b, struct attach_job *j) {
        if (b->agent)
                return 0;
        if (!b->agent_failed) {
                b->agent_error = agent_open(&b->vm, b->o->common.timeout_ms, &b->agent, &b->agent_verr);
                b->agent_failed = b->agent_error < 0;
        }
        if (b->agent_failed) {
                verr_set(&j->e, b->agent_error, "%s", verr_text(&b->agent_verr, b->agent_error));
                j->outcome = outcome_from_agent_error(b->agent_error, NULL);
                return b->agent_error;
        }
        return 0;
}

/* The agent is not trusted: its answer must be the one PROTOCOL.txt promises, for our user. */
static int check_reply(struct attach_job *j, json_object *v) {
        const char *name, *home;
        int r;

        if (!json_object_is_type(v, json_type_object))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach is not an object");
        r = json_get_string(v, "userName", &name);
        if (r < 0 || !streq(name, j->name))
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach names another user");
        if (json_get_uint32(v, "uid", &j->uid) < 0 || json_get_uint32(v, "gid", &j->gid) < 0 ||
            json_get_bool(v, "changed", &j->changed) < 0 || json_get_string(v, "homeDirectory", &home) < 0 ||
            strlen(home) > HOME_PATH_MAX)
                return verr_set(&j->e, -EBADMSG, "the agent's reply to vmuser-attach lacks a valid uid, gid, "
                                                 "homeDirectory or changed");
        if (j->uid == 0 || j->gid == 0)
                return verr_set(&j->e, -EBADMSG, "the agent reports uid %u / gid %u for '%s'", j->uid, j->gid, j->name);
        strcpy(j->home_directory, home);
        return 0;
}

static int step_push(struct attach_batch *b, struct attach_job *j) {
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        int r;

        r = ensure_agent(b, j);
        if (r < 0)
                return r;

        args = json_object_new_object();
        if (!args || json_object_object_add(args, "user", json_object_get(j->record)) < 0 ||
            (j->home && json_object_object_add(args, "home", json_object_get(j->home)) < 0) ||
            (b->o->replace && json_object_object_add(args, "replace", json_object_new_boolean(true)) < 0)) {
                j->outcome = OUTCOME_FAILED;
                return -ENOMEM;
        }

        r = qga_client_call(b->agent, "vmuser-attach", args, b->o->common.timeout_ms, &value, &j->qerr, &j->e);
        if (r < 0) {
                j->remote = r == -EREMOTEIO;
                j->outcome = outcome_from_agent_error(r, &j->qerr);
                return r;
        }
        r = check_reply(j, value);
        if (r < 0)
                j->outcome = OUTCOME_UNREACHABLE;
        return r;
}

static const struct attach_step steps[] = {
        { "resolve", step_resolve, NULL },
        { "record", step_record, NULL },
        { "home", step_home, NULL },
        { "push", step_push, NULL },
};

static void attach_job_done(struct attach_job *j) {
        host_user_free(j->host);
        host_user_record_erase(j->record);
        json_object_put(j->record);
        json_object_put(j->home);
}

static void attach_one(struct attach_batch *b, const char *name) {
        struct attach_job j = { .name = name };
        size_t i;
        int r = 0;

        for (i = 0; i < ELEMENTSOF(steps); i++) {
                r = steps[i].run(b, &j);
                if (r < 0)
                        break;
        }

        if (r < 0) {
                while (i-- > 0)
                        if (steps[i].undo)
                                steps[i].undo(b, &j);
                report_failure(&b->report, name, j.outcome, j.remote ? &j.qerr : NULL, verr_text(&j.e, r));
        } else {
                _cleanup_json_ json_object *fields = json_object_new_object();
                if (fields) {
                        json_object_object_add(fields, "uid", json_object_new_int64(j.uid));
                        json_object_object_add(fields, "gid", json_object_new_int64(j.gid));
                        json_object_object_add(fields, "homeDirectory", json_object_new_string(j.home_directory));
                        json_object_object_add(fields, "changed", json_object_new_boolean(j.changed));
                        json_object_object_add(fields, "hostUid", json_object_new_int64(j.host->uid));
                }
                char home[HOME_PATH_MAX + 1];
                text_sanitize(j.home_directory, home, sizeof(home));
                if (j.changed)
                        report_success(&b->report, name, fields, "Attached '%s' to %s as uid %u (host uid %u), home %s.",
                                       name, b->vm.label, j.uid, (unsigned) j.host->uid, home);
                else
                        report_success(&b->report, name, fields, "'%s' was already attached to %s as uid %u; nothing changed.",
                                       name, b->vm.label, j.uid);
        }
        attach_job_done(&j);
}

enum outcome attach_run(const struct attach_options *o) {
        struct attach_batch b = {
                .o = o,
                .report = { .json = o->common.json, .verb = "attach", .preposition = "to", .vm_label = o->common.vm },
        };
        enum outcome result = OUTCOME_OK;
        struct verr e = {};
        int r;

        r = vm_resolve(o->common.vm, o->common.agent_socket, o->common.qmp_socket, &b.vm, &e);
        if (r < 0) {
                log_error("%s", verr_text(&e, r));
                return r == -ENOMEM ? OUTCOME_FAILED : OUTCOME_USAGE;
        }
        b.report.vm_label = b.vm.label;

        for (char **f = o->ssh_key_files; f && *f; f++) {
                r = host_user_keys_add_file(&b.extra_keys, *f, warn_cb, NULL, &e);
                if (r < 0) {
                        log_error("%s", verr_text(&e, r));
                        result = OUTCOME_FAILED;
                        goto finish;
                }
        }

        for (size_t i = 0; i < o->n_users; i++)
                attach_one(&b, o->users[i]);
        result = report_outcome(&b.report);

finish:
        qga_client_free(b.agent);
        host_user_keys_done(&b.extra_keys);
        vm_done(&b.vm);
        return result;
}
