/*
 * clock.h - the monotonic clock, for timeouts, deadlines and durations: it never jumps
 * with the wall clock (NTP, an operator's date change). Never read inside the projector.
 */
#ifndef BD_CLOCK_H
#define BD_CLOCK_H

#include <stdint.h>

double bd_mono_s(void);    /* seconds since an arbitrary start */
uint64_t bd_mono_ns(void); /* the same in nanoseconds */

#endif
