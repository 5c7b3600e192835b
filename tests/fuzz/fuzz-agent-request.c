/* fuzz-agent-request.c: libFuzzer harness for the agent's whole request path.
 *
 * Input bytes go through agent_feed() exactly as transport bytes would: frame splitter with
 * limits and resync, strict JSON, the command table, record validation and splitting, and the
 * userdb writer, with every file write pointed at a scratch directory (created once per
 * process). Replies are produced and dropped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static struct agent agent;
static bool initialized;

static int drop_reply(struct agent *a, const char *data, size_t len, void *userdata) {
        /* Every reply must be a complete line. */
        if (len == 0 || data[len - 1] != '\n')
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!initialized) {
                char root[] = "/tmp/vmuser-fuzz-XXXXXX";
                static char userdb[64], state[64];
                if (!mkdtemp(root))
                        abort();
                snprintf(userdb, sizeof(userdb), "%s/userdb", root);
                snprintf(state, sizeof(state), "%s/vmuser", root);
                struct agent_config config = {
                        .userdb_dir = userdb,
                        .state_dir = state,
                        .range = { 3000000000u, 3000000063u },
                };
                if (agent_init(&agent, &config) < 0)
                        abort();
                agent.send = drop_reply;
                initialized = true;
        }
        (void) agent_feed(&agent, data, size);
        agent_reset_stream(&agent);
        return 0;
}
