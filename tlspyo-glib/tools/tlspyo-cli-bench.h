/* SPDX-License-Identifier: MIT */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* `tlspyo bench`: @argv[0] is "bench". Returns the process exit code: 0 when
 * every case passed, 1 when one failed or could not run, 2 on a usage error. */
int tlspyo_cli_bench (int    argc,
                      char **argv);

G_END_DECLS
