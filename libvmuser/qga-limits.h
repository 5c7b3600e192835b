/* qga-limits.h: the host's limits on the agent's frames (see qga-limits.c). */
#pragma once

#include "proto.h"

/* While waiting for a sync reply: a frame the size of {"return": ID}. */
extern const struct proto_limits qga_sync_limits;
/* Any reply but vmuser-list's. */
extern const struct proto_limits qga_small_reply_limits;
/* vmuser-list of PROTO_LIST_MAX_USERS users. */
extern const struct proto_limits qga_list_reply_limits;

/* The limits of the reply to COMMAND. */
const struct proto_limits *qga_reply_limits(const char *command);
