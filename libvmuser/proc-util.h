/* proc-util.h: reading a process's identity from /proc/PID/stat (see proc-util.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* State letter (field 3) and start time (field 22, clock ticks since boot) of pid; either
 * out-param may be NULL. -ENOENT when there is no such process (also one that exits while we
 * read), -ENOMEDIUM when /proc itself is missing (then nobody can tell dead from alive),
 * -EBADMSG when the text does not parse, other -errno from open()/read(). */
int proc_stat_read(pid_t pid, char *ret_state, uint64_t *ret_starttime);

/* The parser behind proc_stat_read(), on the text of one /proc/PID/stat. */
int proc_stat_parse(const char *text, char *ret_state, uint64_t *ret_starttime);

/* A state letter of a process that is gone or a zombie: it holds nothing any more. */
static inline bool proc_state_is_dead(char state) {
        return state == 'Z' || state == 'X' || state == 'x';
}

/* 1: a live process with that pid and start time; 0: gone (or a zombie, or another process
 * that got the pid since; also when /proc is missing); -errno when /proc cannot be read. */
int proc_is_alive(pid_t pid, uint64_t starttime);
