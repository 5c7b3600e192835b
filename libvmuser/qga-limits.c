/* qga-limits.c: what a frame from the agent may hold, as the host waits for it (the reader's
 * limits, doc/PROTOCOL.txt "Reply limits"). qga-client.c sets them on its frame reader: a frame
 * over them never reaches json-c. */
#include "qga-limits.h"

#include "json-util.h"
#include "macro.h"
#include "proto.h"

/* While waiting for a sync reply: 0xFF {"return": 9007199254740991} and some whitespace. */
const struct proto_limits qga_sync_limits = {
        .max_bytes = 64,
        .max_values = 4,
        .max_containers = 1,
        .max_token = 24,
        .max_depth = 1,
};

/* Any reply other than vmuser-list (guest-info of up to 256 commands, the attach and detach
 * replies, error objects with a desc of up to 4 KiB). */
const struct proto_limits qga_small_reply_limits = {
        .max_bytes = PROTO_SMALL_REPLY_SIZE,
        .max_values = 4096,
        .max_containers = 512,
        .max_token = 4096,
        .max_depth = VMUSER_JSON_MAX_DEPTH,
};

/* vmuser-list of PROTO_LIST_MAX_USERS users (doc/PROTOCOL.txt, "Reply limits"). */
const struct proto_limits qga_list_reply_limits = {
        .max_bytes = PROTO_MAX_REPLY_SIZE,
        .max_values = 4096 + PROTO_LIST_MAX_USERS * PROTO_LIST_ENTRY_VALUES,
        .max_containers = 512 + PROTO_LIST_MAX_USERS * PROTO_LIST_ENTRY_CONTAINERS,
        .max_token = 4096,
        .max_depth = VMUSER_JSON_MAX_DEPTH,
};

const struct proto_limits *qga_reply_limits(const char *command) {
        return streq(command, "vmuser-list") ? &qga_list_reply_limits : &qga_small_reply_limits;
}
