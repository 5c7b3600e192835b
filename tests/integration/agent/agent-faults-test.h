/* agent-faults-test.h: helpers shared by test-agent-faults and test-agent-enospc (see
 * agent-faults-test.c). */
#pragma once

#include <stdbool.h>

#include "test-util.h"

/* The drop-in path (--userdb=dropin): these tests check its files in /run/userdb. */
extern char *dropin[];

/* How many entries of dir (not starting with '.') end in suffix. */
int count_entries(const char *dir, const char *suffix);

/* Every entry of /run/userdb and /run/vmuser has its owner, every link its right target, every
 * user is whole and nothing is pending. Returns the number of users. */
int check_consistent(void);

/* Detaches PREFIX0..PREFIXn-1; with attached, each must have been attached. */
void detach_numbered(struct test_agent *a, const char *prefix, int n, bool attached);
