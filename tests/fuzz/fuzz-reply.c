/* fuzz-reply.c: libFuzzer harness for what the host reads from an untrusted guest: the QGA
 * frame reader at the host's reply limit, strict JSON, and the typed field access the host tool
 * uses on replies ("return", "error.class", "error.desc"). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "proto.h"

static int on_reply(json_object *obj, int error, void *userdata) {
        json_object *ret, *err;
        const char *s;
        uint32_t u;

        if (!obj)
                return 0;
        if (json_object_object_get_ex(obj, "return", &ret)) {
                (void) json_get_uint32(obj, "return", &u);
                (void) json_get_string(ret, "userName", &s);
                (void) json_get_uint32(ret, "uid", &u);
                (void) json_to_compact(ret);
        }
        if (json_get_object(obj, "error", &err) == 0) {
                (void) json_get_string(err, "class", &s);
                (void) json_get_string(err, "desc", &s);
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(proto_reader_freep) struct proto_reader *r = NULL;

        if (proto_reader_new(PROTO_MAX_REPLY_SIZE, &r) < 0)
                abort();
        (void) proto_reader_feed(r, data, size, on_reply, NULL);
        return 0;
}
