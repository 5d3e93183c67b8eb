/* SPDX-License-Identifier: MIT */
#pragma once

/* One network thread per process, shared by every relay and endpoint (as
 * GDBus shares its worker): I/O keeps flowing while the application computes
 * or blocks. It exists while at least one user holds it, and is joined when
 * the last one lets go, so no thread outlives the objects. */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TlspyoWorker TlspyoWorker;

TlspyoWorker *tlspyo_worker_get          (void);
void          tlspyo_worker_release      (TlspyoWorker  *worker);
GMainContext *tlspyo_worker_get_context  (TlspyoWorker  *worker);
gboolean      tlspyo_worker_is_current   (TlspyoWorker  *worker);
void          tlspyo_worker_invoke       (TlspyoWorker  *worker,
                                          GSourceFunc    func,
                                          gpointer       data,
                                          GDestroyNotify notify);
void          tlspyo_worker_invoke_sync  (TlspyoWorker  *worker,
                                          GSourceFunc    func,
                                          gpointer       data);

/* Asynchronous operations still in flight on the worker (connections,
 * handshakes). The worker waits for them before its thread ends, so that
 * nothing they own is left behind. */
void          tlspyo_worker_hold         (void);
void          tlspyo_worker_unhold       (void);

G_END_DECLS
