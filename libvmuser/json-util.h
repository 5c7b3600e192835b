/* json-util.h: json-c glue shared by the agent, the host tool and the PAM module.
 *
 * Cleanup attribute for json_object, typed field getters that tell "absent" from "wrong type"
 * (so validation can name the field), and a bounded, strict parser for whole buffers. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

static inline void json_object_putp(json_object **j) {
        if (*j)
                json_object_put(*j);
}
#define _cleanup_json_ __attribute__((cleanup(json_object_putp)))

/* Maximum nesting depth accepted anywhere vmuser parses JSON. */
#define VMUSER_JSON_MAX_DEPTH 16

/* Parses exactly one JSON value from buf (len bytes), strictly (RFC 8259, UTF-8 checked), with
 * VMUSER_JSON_MAX_DEPTH. Trailing whitespace is allowed, anything else is -EBADMSG. */
int json_parse_strict(const char *buf, size_t len, json_object **ret);

/* Reads a file under dir_fd (no symlinks followed, at most max_size bytes) and parses it. */
int json_read_file_at(int dir_fd, const char *name, size_t max_size, json_object **ret);

/* Field getters: return 0 and fill ret when present with the right type, -ENOENT when absent,
 * -EINVAL when present with another type. */
int json_get_string(json_object *obj, const char *key, const char **ret);
int json_get_bool(json_object *obj, const char *key, bool *ret);
int json_get_uint32(json_object *obj, const char *key, uint32_t *ret);
int json_get_object(json_object *obj, const char *key, json_object **ret);
int json_get_array(json_object *obj, const char *key, json_object **ret);

/* Serializes compactly (no spaces, '/' not escaped); the string belongs to obj. */
const char *json_to_compact(json_object *obj);
