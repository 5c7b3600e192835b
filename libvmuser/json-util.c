/* json-util.c: strict, bounded JSON parsing and typed field access on top of json-c.
 *
 * Every JSON document vmuser reads (requests, replies, its own state files) goes through
 * json_parse_strict(), so depth limits and UTF-8 validation are applied in one place. */
#include "json-util.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "macro.h"

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

/* json-c's strict mode still takes single-quoted strings and NaN/Infinity. RFC 8259 allows
 * outside strings only structure, whitespace, numbers and the literals true, false and null:
 * check that lexically before json-c sees the text. The nesting depth is counted here too:
 * json-c's own limit lets one more level of empty containers through ("[[...[]...]]" 17 deep
 * with a limit of 16) than of containers that hold a value. 0, -EBADMSG or -ELOOP. */
static int json_text_check_lexically(const char *buf, size_t len) {
        bool in_string = false, escaped = false;
        unsigned depth = 0;

        for (size_t i = 0; i < len; i++) {
                char c = buf[i];
                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                        continue;
                }
                if (c == '{' || c == '[') {
                        if (++depth > VMUSER_JSON_MAX_DEPTH)
                                return -ELOOP;
                        continue;
                }
                if (c == '}' || c == ']') {
                        if (depth > 0)
                                depth--;
                        continue;
                }
                if (strchr(" \t\r\n,:-+.0123456789", c) && c != '\0')
                        continue;
                if (c == 'e' || c == 'E') {
                        /* An exponent: only right after a digit or a '.'. */
                        if (i > 0 && ((buf[i - 1] >= '0' && buf[i - 1] <= '9') || buf[i - 1] == '.'))
                                continue;
                }
                size_t n = 0;
                while (i + n < len && buf[i + n] >= 'a' && buf[i + n] <= 'z')
                        n++;
                if ((n == 4 && (memcmp(buf + i, "true", 4) == 0 || memcmp(buf + i, "null", 4) == 0)) ||
                    (n == 5 && memcmp(buf + i, "false", 5) == 0)) {
                        i += n - 1;
                        continue;
                }
                return -EBADMSG;
        }
        return 0;
}

int json_parse_strict(const char *buf, size_t len, json_object **ret) {
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        _cleanup_json_ json_object *obj = NULL;

        if (len > INT32_MAX)
                return -E2BIG;

        int r = json_text_check_lexically(buf, len);
        if (r < 0)
                return r;

        /* json-c counts the outermost value as a level of its own. */
        tok = json_tokener_new_ex(VMUSER_JSON_MAX_DEPTH + 1);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

        obj = json_tokener_parse_ex(tok, buf, (int) len);
        if (!obj)
                /* Either a syntax error or an unfinished document: both are malformed here. */
                return json_tokener_get_error(tok) == json_tokener_error_depth ? -ELOOP : -EBADMSG;

        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (buf[i] == '\0' || !strchr(" \t\r\n", buf[i]))
                        return -EBADMSG;

        *ret = TAKE_PTR(obj);
        return 0;
}

int json_read_file_at(int dir_fd, const char *name, size_t max_size, json_object **ret) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t done = 0;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max_size)
                return -EFBIG;

        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }

        return json_parse_strict(buf, done, ret);
}

static int json_get_typed(json_object *obj, const char *key, json_type type, json_object **ret) {
        json_object *v;

        if (!json_object_is_type(obj, json_type_object))
                return -EINVAL;
        if (!json_object_object_get_ex(obj, key, &v) || !v)
                return -ENOENT;
        if (!json_object_is_type(v, type))
                return -EINVAL;
        *ret = v;
        return 0;
}

int json_get_string(json_object *obj, const char *key, const char **ret) {
        json_object *v;
        int r = json_get_typed(obj, key, json_type_string, &v);
        if (r < 0)
                return r;
        *ret = json_object_get_string(v);
        return 0;
}

int json_get_bool(json_object *obj, const char *key, bool *ret) {
        json_object *v;
        int r = json_get_typed(obj, key, json_type_boolean, &v);
        if (r < 0)
                return r;
        *ret = json_object_get_boolean(v);
        return 0;
}

int json_get_uint32(json_object *obj, const char *key, uint32_t *ret) {
        json_object *v;
        int64_t i;
        int r = json_get_typed(obj, key, json_type_int, &v);
        if (r < 0)
                return r;
        errno = 0;
        i = json_object_get_int64(v);
        if (errno != 0 || i < 0 || i > (int64_t) UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) i;
        return 0;
}

int json_get_object(json_object *obj, const char *key, json_object **ret) {
        return json_get_typed(obj, key, json_type_object, ret);
}

int json_get_array(json_object *obj, const char *key, json_object **ret) {
        return json_get_typed(obj, key, json_type_array, ret);
}

const char *json_to_compact(json_object *obj) {
        return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}
