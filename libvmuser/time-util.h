/* time-util.h: the one monotonic millisecond clock and deadline arithmetic (see time-util.c). */
#pragma once

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: for deadlines, never for wall-clock time. */
int64_t now_ms(void);

/* Milliseconds until deadline (a now_ms() value), clamped to 0..INT_MAX: poll()'s timeout. */
int ms_left(int64_t deadline);

/* Sleeps ms milliseconds (less when a signal interrupts): the step of a polling loop. */
void sleep_ms(int ms);
