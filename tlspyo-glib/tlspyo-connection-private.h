/* SPDX-License-Identifier: MIT */
#pragma once

/* A framed connection on the worker thread: reads in large chunks and parses
 * every frame out of each; writes everything that is ready as one vectored
 * write, small frames coalesced into one buffer, object bodies referenced,
 * never copied. Used from the worker thread only. */

#include <gio/gio.h>

#include "tlspyo-frame-private.h"

G_BEGIN_DECLS

typedef struct _TlspyoConnection TlspyoConnection;

typedef struct {
  /* One complete frame. Return FALSE once the connection was closed. */
  gboolean (*frame)     (TlspyoConnection  *conn,
                         const TlspyoFrame *frame,
                         gpointer           user_data);
  /* Every frame of one read was handled: the moment to answer in bulk. */
  void     (*read_done) (TlspyoConnection  *conn,
                         gpointer           user_data);
  /* The connection is over; @error says why. Called once, never re-entered. */
  void     (*closed)    (TlspyoConnection  *conn,
                         const GError      *error,
                         gpointer           user_data);
} TlspyoConnectionCallbacks;

TlspyoConnection *tlspyo_connection_new        (GIOStream                       *stream,
                                                const char                      *peer,
                                                const TlspyoConnectionCallbacks *callbacks,
                                                gpointer                         user_data);
TlspyoConnection *tlspyo_connection_ref        (TlspyoConnection *conn);
void              tlspyo_connection_unref      (TlspyoConnection *conn);

void              tlspyo_connection_set_limits (TlspyoConnection *conn,
                                                gsize             max_meta,
                                                guint64           max_body,
                                                guint32           allowed_types);
void              tlspyo_connection_start      (TlspyoConnection *conn);
void              tlspyo_connection_send       (TlspyoConnection *conn,
                                                TlspyoFrameType   type,
                                                GVariant         *meta,
                                                GBytes           *body,
                                                GBytes           *body_trailer);
/* The same with metadata serialized once and reused (see
 * tlspyo_frame_serialize_meta()). */
void              tlspyo_connection_send_serialized (TlspyoConnection *conn,
                                                     TlspyoFrameType   type,
                                                     GBytes           *meta,
                                                     GBytes           *body,
                                                     GBytes           *body_trailer);
void              tlspyo_connection_close      (TlspyoConnection *conn,
                                                const GError     *error);
void              tlspyo_connection_close_when_flushed (TlspyoConnection *conn,
                                                        const GError     *error);
gboolean          tlspyo_connection_is_closed  (TlspyoConnection *conn);
const char       *tlspyo_connection_get_peer   (TlspyoConnection *conn);
gsize             tlspyo_connection_get_queued_bytes (TlspyoConnection *conn);
guint64           tlspyo_connection_get_bytes_in  (TlspyoConnection *conn);
guint64           tlspyo_connection_get_bytes_out (TlspyoConnection *conn);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoConnection, tlspyo_connection_unref)

G_END_DECLS
