/* SPDX-License-Identifier: MIT */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Called with the mutex held. */
typedef gboolean (*TlspyoWaitFunc) (gpointer data);

/* Blocks until @func returns TRUE or @timeout_ms passes (-1: no limit, 0:
 * check once). @mutex is held on entry and on return. When @context is
 * non-NULL and can be acquired by this thread, it is iterated while waiting,
 * so a script that never runs a main loop still gets its signals and
 * callbacks; otherwise the thread sleeps on @cond. Whoever changes what
 * @func looks at must call tlspyo_wait_wake(). */
gboolean tlspyo_wait_until (GMutex         *mutex,
                            GCond          *cond,
                            GMainContext   *context,
                            int             timeout_ms,
                            TlspyoWaitFunc  func,
                            gpointer        data);

void     tlspyo_wait_wake  (GCond          *cond,
                            GMainContext   *context);

G_END_DECLS
