/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <glib.h>

/* The library is built with -fvisibility=hidden; only symbols marked with
 * these macros are exported, so the ABI is exactly the documented API. */
#if defined(TLSPYO_COMPILATION) && defined(__GNUC__)
# define _TLSPYO_EXTERN __attribute__((visibility("default"))) extern
#else
# define _TLSPYO_EXTERN extern
#endif

#define TLSPYO_AVAILABLE_IN_ALL _TLSPYO_EXTERN
#define TLSPYO_AVAILABLE_IN_0_1 _TLSPYO_EXTERN
