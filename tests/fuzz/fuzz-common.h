/* SPDX-License-Identifier: MIT */
#pragma once

/* libFuzzer entry points. Each fuzz-*.c defines both; built with
 * -fsanitize=fuzzer they are driven by libFuzzer, and linked with
 * replay-main.c they replay a corpus in a plain `meson test`. */

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

int  LLVMFuzzerInitialize   (int            *argc,
                             char         ***argv);
int  LLVMFuzzerTestOneInput (const uint8_t  *data,
                             size_t          size);

/* Criticals abort (a g_return_if_fail() reached from input is a bug);
 * informational logs are dropped, so that fuzzing is not slowed down by
 * them. Call once, from LLVMFuzzerInitialize(). */
void tlspyo_fuzz_init       (void);
/* For targets where no input may cause a warning either (a GObject
 * property value out of range, for one). */
void tlspyo_fuzz_set_warnings_fatal (gboolean fatal);
