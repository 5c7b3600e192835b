/* attach-state.h: the per-user state file /run/vmuser/users/NAME.json.
 *
 * Written by the agent as part of an attach (through the intent journal, see userdb.h), read by
 * pam_vmuser at every open/close to learn whether a user is ours and what to mount, and by the
 * agent for vmuser-list and detach. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "home-spec.h"
#include "names.h"

struct attach_state {
        char user_name[VMUSER_NAME_MAX + 1];
        uint32_t uid;
        uint32_t gid;
        char home_directory[HOME_PATH_MAX + 1];
        bool has_home;
        struct home_spec home;
        uint64_t attached_usec;
        /* Set by the agent for the whole of a detach: pam_vmuser refuses new sessions. */
        bool detaching;
};

/* Reads and validates users/NAME.json under state_dir_fd (the /run/vmuser fd).
 * -ENOENT when the user is not attached; -EBADMSG when the file does not validate. */
int attach_state_read(int state_dir_fd, const char *user_name, struct attach_state *ret);

/* Parses a state object (the content of the file). */
int attach_state_from_json(json_object *obj, struct attach_state *ret);
int attach_state_to_json(const struct attach_state *s, json_object *member_of, json_object **ret);

/* Sets or clears "detaching" in users/NAME.json below users_dir_fd, keeping every other member
 * as it is (clearing restores the file byte for byte). -ENOENT when the user is not attached. */
int attach_state_set_detaching(int users_dir_fd, const char *user_name, bool on);
