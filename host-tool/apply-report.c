/* apply-report.c: step 4 of `vmuser apply` (see apply.c): the workers' results, in manifest
 * order. Per VM a summary line when something changed, failed or waits (with --diff one line per
 * user: +added ~replaced -removed !pending xfailed), or with --json the worker's object as it
 * came; then one line of totals, and the exit status. Names and reasons came from the guest
 * through a worker: they are sanitized before they reach a terminal. */
#include <stdio.h>
#include <string.h>

#include "apply.h"
#include "macro.h"
#include "output.h"

static size_t list_len(json_object *r, const char *key) {
        json_object *a;
        return json_object_object_get_ex(r, key, &a) && json_object_is_type(a, json_type_array) ?
                       json_object_array_length(a) :
                       0;
}

static const char *result_error(json_object *r) {
        json_object *v;
        return json_object_object_get_ex(r, "error", &v) && json_object_is_type(v, json_type_string) ?
                       json_object_get_string(v) :
                       NULL;
}

void apply_summary(json_object *r, bool check, char *buf, size_t size) {
        static const char *const keys[] = { "added", "replaced", "removed", "pending", "failed", "unchanged" };
        const char *err = result_error(r);
        size_t off = 0;
        char safe[600];

        if (err) {
                snprintf(buf, size, "FAILED: %s", text_sanitize(err, safe, sizeof(safe)));
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                size_t k = list_len(r, keys[i]);
                if (k == 0 || off >= size)
                        continue;
                off += (size_t) snprintf(buf + off, size - off, "%s%zu %s%s", off ? ", " : "", k,
                                         check && i < 3 ? "would be " : "", keys[i]);
        }
        if (off == 0)
                snprintf(buf, size, "no users declared or attached");
}

static void print_diff(json_object *r) {
        static const struct {
                const char *key;
                char mark;
        } kinds[] = { { "added", '+' }, { "replaced", '~' }, { "removed", '-' }, { "pending", '!' }, { "failed", 'x' } };
        const char *vm = json_object_get_string(json_object_object_get(r, "vm"));
        char safe_vm[300], safe[1300];

        text_sanitize(vm, safe_vm, sizeof(safe_vm));
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                json_object *a;
                if (!json_object_object_get_ex(r, kinds[k].key, &a))
                        continue;
                for (size_t i = 0; i < json_object_array_length(a); i++) {
                        json_object *item = json_object_array_get_idx(a, i), *name = item, *reason = NULL;
                        if (json_object_is_type(item, json_type_object)) {
                                name = json_object_object_get(item, "userName");
                                reason = json_object_object_get(item, "reason");
                        }
                        printf("%c %s %s%s%s%s\n", kinds[k].mark, safe_vm, json_object_get_string(name),
                               reason ? " (" : "", reason ? text_sanitize(json_object_get_string(reason), safe, sizeof(safe)) : "",
                               reason ? ")" : "");
                }
        }
}

int apply_report(const struct apply_options *o, const struct target *targets, size_t n) {
        size_t n_failed_vms = 0, n_failed_users = 0, n_changed_vms = 0;
        size_t totals[6] = {};
        static const char *const keys[] = { "added", "replaced", "removed", "pending", "failed", "unchanged" };

        for (size_t i = 0; i < n; i++) {
                json_object *res = targets[i].result;
                char line[1024], safe_vm[300];
                bool changed = false, failed;

                if (!res)
                        continue;
                failed = result_error(res) || list_len(res, "failed") > 0;
                for (size_t k = 0; k < ELEMENTSOF(keys); k++)
                        totals[k] += list_len(res, keys[k]);
                changed = list_len(res, "added") + list_len(res, "replaced") + list_len(res, "removed") > 0;
                n_failed_vms += failed;
                n_failed_users += list_len(res, "failed");
                n_changed_vms += changed;
                if (o->json) {
                        json_print_line(res);
                        continue;
                }
                if (result_error(res)) {
                        char safe[600];
                        log_error("VM %s: %s", text_sanitize(targets[i].vm, safe_vm, sizeof(safe_vm)),
                                  text_sanitize(result_error(res), safe, sizeof(safe)));
                }
                if (o->diff)
                        print_diff(res);
                else if (changed || failed || list_len(res, "pending") > 0) {
                        apply_summary(res, o->check, line, sizeof(line));
                        printf("%s: %s\n",
                               text_sanitize(json_object_get_string(json_object_object_get(res, "vm")), safe_vm,
                                             sizeof(safe_vm)),
                               line);
                }
        }
        if (!o->json) {
                if (n == 0)
                        printf("The manifest names no VM: nothing to do.\n");
                else if (n_changed_vms == 0 && n_failed_vms == 0 && totals[3] == 0)
                        printf("Nothing %s on %zu VM%s: %zu user%s as declared.\n", o->check ? "would change" : "changed", n,
                               n == 1 ? "" : "s", totals[5], totals[5] == 1 ? "" : "s");
                else
                        printf("%zu VM%s: %zu %sadded, %zu %sreplaced, %zu %sremoved, %zu pending, %zu unchanged; %zu VM%s "
                               "failed (%zu user%s).\n",
                               n, n == 1 ? "" : "s", totals[0], o->check ? "to be " : "", totals[1],
                               o->check ? "to be " : "", totals[2], o->check ? "to be " : "", totals[3], totals[5],
                               n_failed_vms, n_failed_vms == 1 ? "" : "s", n_failed_users, n_failed_users == 1 ? "" : "s");
        }
        fflush(stdout);
        return n_failed_vms > 0 ? 1 : o->check && n_changed_vms > 0 ? 2 : 0;
}
