/* output.h: everything the host tool writes.
 *
 * Errors and warnings go to stderr as "vmuser: ..." lines, once, at the place that decides the
 * outcome. Results go to stdout: a sentence per user, or with --json one compact JSON object
 * per line (JSON Lines). Strings that came from the guest are untrusted: before they reach a
 * terminal, control characters are replaced (text_sanitize); in JSON they are escaped anyway.
 *
 * A batch (attach/detach of several users) collects one result per user in a struct report;
 * report_outcome() then tells success, partial failure, or the first failure. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"
#include "qga-client.h"
#include "vmuser.h"

void log_error(const char *fmt, ...) _printf_(1, 2);
void log_warning(const char *fmt, ...) _printf_(1, 2);

/* Copies s into buf (size bytes), replacing C0/C1 control characters and DEL with '?'. */
const char *text_sanitize(const char *s, char *buf, size_t size);

/* Prints obj as one compact line on stdout. */
void json_print_line(json_object *obj);

/* The outcome of a failed agent call: refused/busy for an error reply, unreachable for the
 * transport and protocol errors, failed for local ones. */
enum outcome outcome_from_agent_error(int r, const struct qga_error *qe);

struct report {
        bool json;
        const char *verb;      /* "attach", "detach": for messages */
        const char *preposition; /* "to", "from" */
        const char *vm_label;
        size_t n_ok;
        size_t n_failed;
        enum outcome first_failure;
        /* Called once per user result, success ("ok") or failure (the outcome's name, the reason):
         * the audit trail (audit.c). May be NULL. */
        void (*on_result)(void *userdata, const char *user, const char *result, const char *reason,
                          json_object *fields);
        void *on_result_userdata;
        report_sink_fn sink;   /* set: results go here, nothing is printed (apply.c) */
        void *sink_userdata;
};

/* A batch's report on the VM vm_label: --json and the sink (apply.c) from c, each result also
 * handed to on_result (may be NULL). */
void report_init(struct report *rep, const struct common_options *c, const char *verb, const char *preposition,
                 const char *vm_label,
                 void (*on_result)(void *userdata, const char *user, const char *result, const char *reason,
                                   json_object *fields),
                 void *on_result_userdata);

/* A user succeeded: with --json prints {"userName", "result": "ok", <fields>} (fields is
 * borrowed; may be NULL), else the sentence. */
void report_success(struct report *rep, const char *user, json_object *fields, const char *fmt, ...) _printf_(4, 5);

/* A user failed: logs "Failed to VERB 'USER' ...: REASON" to stderr and, with --json, prints
 * {"userName", "result": <outcome>, "error": REASON[, "errorClass": CLASS]}. qe may be NULL;
 * for a refusal or busy it replaces reason with the agent's desc. */
void report_failure(struct report *rep, const char *user, enum outcome o, const struct qga_error *qe,
                    const char *reason);

enum outcome report_outcome(const struct report *rep);
