/* reaper.h: unmounting the home of a user whose sessions all ended without a close (see
 * reaper.c). Event driven: inotify on /run/vmuser/sessions, a pidfd per session entry, and an
 * sd-login monitor; no timers. */
#pragma once

#include <systemd/sd-event.h>

struct agent;
struct reaper;

/* Starts watching on event (makes /run/vmuser/sessions if missing) and checks every user with
 * session entries once. -errno when the sessions directory or inotify cannot be set up. */
int reaper_new(sd_event *event, struct agent *agent, struct reaper **ret);
struct reaper *reaper_free(struct reaper *r);
void reaper_freep(struct reaper **r);
