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
/* Whether the peer closed the stream in the middle of a frame: a protocol
 * error from a peer that is still there, but also what a network cut or
 * a killed peer looks like. */
gboolean          tlspyo_connection_get_truncated (TlspyoConnection *conn);
guint64           tlspyo_connection_get_bytes_in  (TlspyoConnection *conn);
guint64           tlspyo_connection_get_bytes_out (TlspyoConnection *conn);
/* What the kernel knows of the peer, TLS records included: @acked, the
 * bytes of ours the peer's TCP stack acknowledged (it grows while the peer
 * takes what we send, even when our last write finished long ago and our
 * data waits in socket buffers); @received, the bytes the peer sent that
 * reached our socket, read by us yet or not. FALSE, and both 0, when
 * unknown (not Linux, not a TCP socket, closed). */
gboolean          tlspyo_connection_get_tcp_counters (TlspyoConnection *conn,
                                                      guint64          *acked,
                                                      guint64          *received);

/* The durable relay's write gate: while it is closed (state changes not
 * committed yet), no byte of a connection that uses it leaves; opening it
 * restarts the writes that waited. Shared by the relay's connections, so
 * that one commit releases them all. Worker thread only. */
typedef struct _TlspyoWriteGate TlspyoWriteGate;

TlspyoWriteGate  *tlspyo_write_gate_new        (void);
TlspyoWriteGate  *tlspyo_write_gate_ref        (TlspyoWriteGate  *gate);
void              tlspyo_write_gate_unref      (TlspyoWriteGate  *gate);
void              tlspyo_write_gate_close      (TlspyoWriteGate  *gate);
void              tlspyo_write_gate_open       (TlspyoWriteGate  *gate);
gboolean          tlspyo_write_gate_is_closed  (TlspyoWriteGate  *gate);
/* Once, before the first write. */
void              tlspyo_connection_set_write_gate (TlspyoConnection *conn,
                                                    TlspyoWriteGate  *gate);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoConnection, tlspyo_connection_unref)

G_END_DECLS
