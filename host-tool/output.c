/* output.c: stderr lines, stdout results, sanitizing guest strings (see output.h). */
#include "output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json-util.h"

static void log_line(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void log_line(const char *prefix, const char *fmt, va_list ap) {
        char text[4096];

        vsnprintf(text, sizeof(text), fmt, ap);
        fflush(stdout);
        fprintf(stderr, "vmuser: %s%s\n", prefix, text);
}

void log_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_line("", fmt, ap);
        va_end(ap);
}

void log_warning(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_line("warning: ", fmt, ap);
        va_end(ap);
}

const char *text_sanitize(const char *s, char *buf, size_t size) {
        size_t o = 0;

        if (size == 0)
                return "";
        for (const unsigned char *p = (const unsigned char *) strempty(s); *p && o + 1 < size; p++) {
                if (*p < 0x20 || *p == 0x7f)
                        buf[o++] = '?';
                else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
                        /* U+0080..U+009F: C1 controls, some terminals obey them. */
                        buf[o++] = '?';
                        p++;
                } else
                        buf[o++] = (char) *p;
        }
        buf[o] = '\0';
        return buf;
}

void json_print_line(json_object *obj) {
        const char *s = json_to_compact(obj);
        if (s)
                printf("%s\n", s);
        fflush(stdout);
}

const char *outcome_to_string(enum outcome o) {
        static const char *const names[_OUTCOME_MAX] = {
                [OUTCOME_OK] = "ok",
                [OUTCOME_FAILED] = "failed",
                [OUTCOME_USAGE] = "usage",
                [OUTCOME_UNREACHABLE] = "unreachable",
                [OUTCOME_REFUSED] = "refused",
                [OUTCOME_BUSY] = "busy",
                [OUTCOME_PARTIAL] = "partial",
                [OUTCOME_HOST_USER] = "host-user",
        };
        return o >= 0 && o < _OUTCOME_MAX ? names[o] : "failed";
}

enum outcome outcome_from_agent_error(int r, const struct qga_error *qe) {
        if (r == -EREMOTEIO)
                return qe && streq(qe->error_class, "UserBusy") ? OUTCOME_BUSY : OUTCOME_REFUSED;
        if (r == -ENOMEM)
                return OUTCOME_FAILED;
        return OUTCOME_UNREACHABLE;
}

void report_init(struct report *rep, const struct common_options *c, const char *verb, const char *preposition,
                 const char *vm_label,
                 void (*on_result)(void *userdata, const char *user, const char *result, const char *reason,
                                   json_object *fields),
                 void *on_result_userdata) {
        *rep = (struct report) {
                .json = c->json,
                .verb = verb,
                .preposition = preposition,
                .vm_label = vm_label,
                .on_result = on_result,
                .on_result_userdata = on_result_userdata,
                .sink = c->sink,
                .sink_userdata = c->sink_userdata,
        };
}

void report_success(struct report *rep, const char *user, json_object *fields, const char *fmt, ...) {
        rep->n_ok++;
        if (rep->on_result)
                rep->on_result(rep->on_result_userdata, user, "ok", NULL, fields);

        if (rep->sink) {
                rep->sink(rep->sink_userdata, user, OUTCOME_OK, fields, NULL, NULL);
                return;
        }
        if (rep->json) {
                _cleanup_json_ json_object *line = json_object_new_object();
                if (!line)
                        return;
                json_object_object_add(line, "userName", json_object_new_string(user));
                json_object_object_add(line, "result", json_object_new_string("ok"));
                if (fields) {
                        json_object_object_foreach(fields, key, val)
                                json_object_object_add(line, key, json_object_get(val));
                }
                json_print_line(line);
                return;
        }

        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

void report_failure(struct report *rep, const char *user, enum outcome o, const struct qga_error *qe,
                    const char *reason) {
        char safe[2048];

        if (rep->n_failed++ == 0)
                rep->first_failure = o;
        /* A refusal is the agent's own sentence, in full. */
        if (qe && (o == OUTCOME_REFUSED || o == OUTCOME_BUSY))
                reason = qe->desc;

        if (rep->on_result)
                rep->on_result(rep->on_result_userdata, user, outcome_to_string(o), reason, NULL);
        if (rep->sink) {
                rep->sink(rep->sink_userdata, user, o, NULL, reason,
                          qe && (o == OUTCOME_REFUSED || o == OUTCOME_BUSY) ? qe->error_class : NULL);
                return;
        }
        text_sanitize(reason, safe, sizeof(safe));
        if (o == OUTCOME_REFUSED || o == OUTCOME_BUSY)
                log_error("Failed to %s '%s' %s %s: refused by the guest (%s): %s", rep->verb, user, rep->preposition,
                          rep->vm_label, qe ? text_sanitize(qe->error_class, (char[64]) {}, 64) : "?", safe);
        else
                log_error("Failed to %s '%s' %s %s: %s", rep->verb, user, rep->preposition, rep->vm_label, safe);

        if (rep->json) {
                _cleanup_json_ json_object *line = json_object_new_object();
                if (!line)
                        return;
                json_object_object_add(line, "userName", json_object_new_string(user));
                json_object_object_add(line, "result", json_object_new_string(outcome_to_string(o)));
                json_object_object_add(line, "error", json_object_new_string(reason));
                if (qe && (o == OUTCOME_REFUSED || o == OUTCOME_BUSY))
                        json_object_object_add(line, "errorClass", json_object_new_string(qe->error_class));
                json_print_line(line);
        }
}

enum outcome report_outcome(const struct report *rep) {
        if (rep->n_failed == 0)
                return OUTCOME_OK;
        if (rep->n_ok > 0)
                return OUTCOME_PARTIAL;
        return rep->first_failure;
}
