/* transport.h: how bytes reach the agent: stdin/stdout, a listening UNIX socket, or a
 * virtio-serial character device. See transport.c for the connection rules of each. */
#pragma once

#include <systemd/sd-event.h>

#include "agent.h"

enum transport_kind {
        TRANSPORT_STDIO,
        TRANSPORT_LISTEN,
        TRANSPORT_DEVICE,
};

struct transport;

int transport_new(sd_event *event, struct agent *agent, enum transport_kind kind, const char *path,
                  struct transport **ret);
struct transport *transport_free(struct transport *t);
void transport_freep(struct transport **t);
