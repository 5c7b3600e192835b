/* record-line.c: the set lines of the record store (record-store.h), built from an attach's
 * record texts (see record-line.h). record_store_make_line() parses each text and serializes
 * the whole (for texts read from files: the migration from drop-ins); record_store_join_line()
 * joins texts json_to_compact() made as they are, which gives the same bytes without parsing
 * (the attach path: the line is the only copy of a user's records the agent writes). */
#include "record-line.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "record-store.h"

int record_store_make_line(const char *name, const char *user, const char *group, const char *privileged,
                           const char *state, char **ret) {
        _cleanup_json_ json_object *obj = json_object_new_object();
        json_object *u = NULL, *g = NULL, *p = NULL, *st = NULL;
        const char *text;
        int r;

        if (!obj)
                return -ENOMEM;
        if ((r = json_parse_strict(user, strlen(user), &u)) < 0 ||
            json_object_object_add(obj, "userName", json_object_new_string(name)) < 0 ||
            json_object_object_add(obj, "user", u) < 0) {
                json_object_put(u);
                return r < 0 ? r : -ENOMEM;
        }
        if ((r = json_parse_strict(group, strlen(group), &g)) < 0 || json_object_object_add(obj, "group", g) < 0) {
                json_object_put(g);
                return r < 0 ? r : -ENOMEM;
        }
        if (privileged &&
            ((r = json_parse_strict(privileged, strlen(privileged), &p)) < 0 ||
             json_object_object_add(obj, "privileged", p) < 0)) {
                json_object_put(p);
                return r < 0 ? r : -ENOMEM;
        }
        if (state && ((r = json_parse_strict(state, strlen(state), &st)) < 0 ||
                      json_object_object_add(obj, "state", st) < 0)) {
                json_object_put(st);
                return r < 0 ? r : -ENOMEM;
        }
        text = json_to_compact(obj);
        if (!text)
                return -ENOMEM;
        if (strlen(text) > RECORD_STORE_LINE_MAX)
                r = -E2BIG;
        else
                r = (*ret = strdup(text)) ? 0 : -ENOMEM;
        explicit_bzero((char *) text, strlen(text));
        return r;
}

int record_store_join_line(const char *name, const char *user, const char *group, const char *privileged,
                           const char *state, char **ret) {
        const char *parts[] = { "{\"userName\":\"", name, "\",\"user\":", user, ",\"group\":", group,
                                privileged ? ",\"privileged\":" : "", privileged ? privileged : "",
                                state ? ",\"state\":" : "", state ? state : "", "}" };
        size_t len = 0, off = 0;
        char *line;

        /* A valid name needs no escaping in JSON. */
        if (!name_is_valid(name))
                return -EINVAL;
        size_t lens[ELEMENTSOF(parts)];
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                /* A text may end in the newline of its file (records.c renders files). */
                lens[i] = strlen(parts[i]);
                if (i % 2 == 1 && lens[i] > 0 && parts[i][lens[i] - 1] == '\n')
                        lens[i]--;
                len += lens[i];
        }
        if (len > RECORD_STORE_LINE_MAX)
                return -E2BIG;
        line = malloc(len + 1);
        if (!line)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                memcpy(line + off, parts[i], lens[i]);
                off += lens[i];
        }
        line[off] = '\0';
        *ret = line;
        return 0;
}
