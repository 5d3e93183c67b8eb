/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#if defined(__linux__)
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/tcp.h>
#endif

#include "tlspyo-connection-private.h"
#include "tlspyo-error.h"
#include "tlspyo-worker-private.h"

#define READ_BUFFER_SIZE   (256 * 1024)
/* Bodies at least this large are read straight into their final buffer. */
#define READ_DIRECT_MIN    (64 * 1024)
/* Bodies smaller than this are copied into the write buffer: a copy of a
 * small object is cheaper than a separate vector (and a separate record). */
#define COALESCE_MAX       (16 * 1024)
#define STAGING_MAX        (512 * 1024)
#define MAX_VECTORS        64
/* At most this much goes into one write: a large body leaves in slices,
 * and each slice written counts in bytes_out as soon as it is out. The
 * keepalive of a connection sending a long body hears nothing from the peer
 * (its PING waits behind the body), so the body's own progress, bytes the
 * peer takes, is what shows the peer alive; one write of the whole body
 * would show nothing until its end. */
#define WRITE_SLICE_MAX    (1024 * 1024)

struct _TlspyoConnection {
  gatomicrefcount                  ref_count;
  GIOStream                       *stream;
  GInputStream                    *input;
  GOutputStream                   *output;
  GCancellable                    *cancellable;
  char                            *peer;
  const TlspyoConnectionCallbacks *callbacks;
  gpointer                         user_data;

  TlspyoFrameDecoder              *decoder;
  guint8                          *read_buffer;
  gboolean                         reading;
  gboolean                         read_direct;

  GByteArray                      *staging;
  GQueue                           pending;       /* of GBytes, in write order */
  gsize                            queued_bytes;
  GBytes                          *inflight[MAX_VECTORS];
  GOutputVector                    vectors[MAX_VECTORS];
  guint                            n_inflight;
  gboolean                         writing;
  GSource                         *write_source;

  gboolean                         started;
  gboolean                         closed;
  gboolean                         truncated;
  gboolean                         stream_closing;
  gboolean                         close_when_flushed;
  GError                          *flush_close_error;

  TlspyoWriteGate                 *gate;          /* or NULL: writes never wait */
  gboolean                         gate_waiting;  /* in gate->waiting */

  guint64                          bytes_in;
  guint64                          bytes_out;
  GSocket                         *socket;   /* under @stream, or NULL */
};

static void start_read  (TlspyoConnection *conn);
static void start_write (TlspyoConnection *conn);
static gboolean gate_holds  (TlspyoConnection *conn);
static void     gate_forget (TlspyoConnection *conn);

/* The TCP socket under @stream (through TLS), or NULL (pipes in the fuzz
 * targets, or a stream of another kind). */
static GSocket *
find_socket (GIOStream *stream)
{
  g_autoptr(GIOStream) base = NULL;

  if (G_IS_SOCKET_CONNECTION (stream))
    return g_object_ref (g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream)));
  if (!G_IS_TLS_CONNECTION (stream))
    return NULL;
  g_object_get (stream, "base-io-stream", &base, NULL);
  return base != NULL ? find_socket (base) : NULL;
}

TlspyoConnection *
tlspyo_connection_new (GIOStream                       *stream,
                       const char                      *peer,
                       const TlspyoConnectionCallbacks *callbacks,
                       gpointer                         user_data)
{
  TlspyoConnection *conn = g_new0 (TlspyoConnection, 1);

  g_atomic_ref_count_init (&conn->ref_count);
  conn->stream = g_object_ref (stream);
  conn->input = g_io_stream_get_input_stream (stream);
  conn->output = g_io_stream_get_output_stream (stream);
  conn->cancellable = g_cancellable_new ();
  conn->peer = g_strdup (peer);
  conn->socket = find_socket (stream);
  conn->callbacks = callbacks;
  conn->user_data = user_data;
  conn->decoder = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                            TLSPYO_FRAME_MASK_ALL);
  conn->read_buffer = g_malloc (READ_BUFFER_SIZE);
  conn->staging = g_byte_array_new ();
  g_queue_init (&conn->pending);
  tlspyo_worker_hold ();
  return conn;
}

TlspyoConnection *
tlspyo_connection_ref (TlspyoConnection *conn)
{
  g_atomic_ref_count_inc (&conn->ref_count);
  return conn;
}

void
tlspyo_connection_unref (TlspyoConnection *conn)
{
  if (!g_atomic_ref_count_dec (&conn->ref_count))
    return;

  g_assert (!conn->reading && !conn->writing);
  if (conn->write_source != NULL)
    {
      g_source_destroy (conn->write_source);
      g_source_unref (conn->write_source);
    }
  g_queue_clear_full (&conn->pending, (GDestroyNotify) g_bytes_unref);
  g_byte_array_unref (conn->staging);
  g_clear_error (&conn->flush_close_error);
  g_clear_pointer (&conn->gate, tlspyo_write_gate_unref);
  tlspyo_frame_decoder_free (conn->decoder);
  g_free (conn->read_buffer);
  g_free (conn->peer);
  g_object_unref (conn->cancellable);
  g_clear_object (&conn->socket);
  g_object_unref (conn->stream);
  g_free (conn);
  tlspyo_worker_unhold ();
}

void
tlspyo_connection_set_limits (TlspyoConnection *conn,
                              gsize             max_meta,
                              guint64           max_body,
                              guint32           allowed_types)
{
  tlspyo_frame_decoder_set_limits (conn->decoder, max_meta, max_body, allowed_types);
}

const char *
tlspyo_connection_get_peer (TlspyoConnection *conn)
{
  return conn->peer;
}

gboolean
tlspyo_connection_is_closed (TlspyoConnection *conn)
{
  return conn->closed;
}

gsize
tlspyo_connection_get_queued_bytes (TlspyoConnection *conn)
{
  return conn->queued_bytes;
}

gboolean
tlspyo_connection_get_truncated (TlspyoConnection *conn)
{
  return conn->truncated;
}

guint64
tlspyo_connection_get_bytes_in (TlspyoConnection *conn)
{
  return conn->bytes_in;
}

guint64
tlspyo_connection_get_bytes_out (TlspyoConnection *conn)
{
  return conn->bytes_out;
}

gboolean
tlspyo_connection_get_tcp_counters (TlspyoConnection *conn,
                                    guint64          *acked,
                                    guint64          *received)
{
#if defined(__linux__) && defined(TCP_INFO)
  struct tcp_info info;
  socklen_t len = sizeof info;

  *acked = *received = 0;
  if (conn->socket == NULL || conn->closed)
    return FALSE;
  memset (&info, 0, sizeof info);
  /* Fails on a socket that is not TCP; kernels before 4.1 fill less. */
  if (getsockopt (g_socket_get_fd (conn->socket), IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
      len < G_STRUCT_OFFSET (struct tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received)
    return FALSE;
  *acked = info.tcpi_bytes_acked;
  *received = info.tcpi_bytes_received;
  return TRUE;
#else
  *acked = *received = 0;
  return FALSE;
#endif
}

static void
close_stream_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  TlspyoConnection *conn = user_data;

  /* Errors here only mean the peer went first. */
  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
  tlspyo_connection_unref (conn);
}

static void
maybe_close_stream (TlspyoConnection *conn)
{
  /* GIO refuses to close a stream with an operation pending, so wait for the
   * cancelled read and write to come back. */
  if (!conn->closed || conn->stream_closing || conn->reading || conn->writing)
    return;
  conn->stream_closing = TRUE;
  g_io_stream_close_async (conn->stream, G_PRIORITY_DEFAULT, NULL, close_stream_cb,
                           tlspyo_connection_ref (conn));
}

void
tlspyo_connection_close (TlspyoConnection *conn,
                         const GError     *error)
{
  g_autoptr(GError) default_error = NULL;

  if (conn->closed)
    return;
  conn->closed = TRUE;
  gate_forget (conn);

  tlspyo_connection_ref (conn);
  g_cancellable_cancel (conn->cancellable);
  if (conn->write_source != NULL)
    {
      g_source_destroy (conn->write_source);
      g_clear_pointer (&conn->write_source, g_source_unref);
    }
  if (error == NULL)
    {
      default_error = g_error_new_literal (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED, "Connection closed");
      error = default_error;
    }
  if (conn->callbacks->closed != NULL)
    conn->callbacks->closed (conn, error, conn->user_data);
  maybe_close_stream (conn);
  tlspyo_connection_unref (conn);
}

void
tlspyo_connection_close_when_flushed (TlspyoConnection *conn,
                                      const GError     *error)
{
  if (conn->closed || conn->close_when_flushed)
    return;
  conn->close_when_flushed = TRUE;
  if (error != NULL)
    conn->flush_close_error = g_error_copy (error);
  start_write (conn);
}

/* Reading */

static gboolean
frame_cb (const TlspyoFrame *frame,
          gpointer           user_data)
{
  TlspyoConnection *conn = user_data;

  if (conn->closed || conn->close_when_flushed)
    return FALSE;
  return conn->callbacks->frame (conn, frame, conn->user_data);
}

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  TlspyoConnection *conn = user_data;
  g_autoptr(GError) error = NULL;
  gssize n;
  gboolean ok;

  n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  conn->reading = FALSE;

  if (conn->closed)
    goto out;

  if (n < 0)
    {
      g_autoptr(GError) net = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                           "Connection to %s lost: %s", conn->peer, error->message);
      tlspyo_connection_close (conn, net);
      goto out;
    }
  if (n == 0)
    {
      g_autoptr(GError) eof = NULL;
      conn->truncated = tlspyo_frame_decoder_get_buffered (conn->decoder) > 0;
      if (conn->truncated)
        eof = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                           "%s closed the connection in the middle of a frame", conn->peer);
      else
        eof = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "%s closed the connection", conn->peer);
      tlspyo_connection_close (conn, eof);
      goto out;
    }

  conn->bytes_in += n;
  if (conn->read_direct)
    ok = tlspyo_frame_decoder_commit_body (conn->decoder, n, frame_cb, conn, &error);
  else
    ok = tlspyo_frame_decoder_feed (conn->decoder, conn->read_buffer, n, frame_cb, conn, &error);

  if (!ok)
    {
      g_prefix_error (&error, "Malformed data from %s: ", conn->peer);
      tlspyo_connection_close (conn, error);
      goto out;
    }

  if (!conn->closed && conn->callbacks->read_done != NULL)
    conn->callbacks->read_done (conn, conn->user_data);
  start_read (conn);

out:
  maybe_close_stream (conn);
  tlspyo_connection_unref (conn);
}

static void
start_read (TlspyoConnection *conn)
{
  gsize missing = 0;
  guint8 *space;

  if (conn->closed || conn->reading || conn->close_when_flushed)
    return;

  space = tlspyo_frame_decoder_body_space (conn->decoder, &missing);
  conn->reading = TRUE;
  if (space != NULL && missing >= READ_DIRECT_MIN)
    {
      conn->read_direct = TRUE;
      g_input_stream_read_async (conn->input, space, MIN (missing, (gsize) G_MAXSSIZE),
                                 G_PRIORITY_DEFAULT, conn->cancellable, read_cb,
                                 tlspyo_connection_ref (conn));
    }
  else
    {
      conn->read_direct = FALSE;
      g_input_stream_read_async (conn->input, conn->read_buffer, READ_BUFFER_SIZE,
                                 G_PRIORITY_DEFAULT, conn->cancellable, read_cb,
                                 tlspyo_connection_ref (conn));
    }
}

void
tlspyo_connection_start (TlspyoConnection *conn)
{
  if (conn->started)
    return;
  conn->started = TRUE;
  start_read (conn);
}

/* Writing */

static void
flush_staging (TlspyoConnection *conn)
{
  if (conn->staging->len == 0)
    return;
  g_queue_push_tail (&conn->pending, g_byte_array_free_to_bytes (conn->staging));
  conn->staging = g_byte_array_sized_new (4096);
}

static void
writev_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  TlspyoConnection *conn = user_data;
  g_autoptr(GError) error = NULL;
  gsize written = 0;
  gboolean ok;

  ok = g_output_stream_writev_all_finish (G_OUTPUT_STREAM (source), result, &written, &error);
  conn->writing = FALSE;
  conn->bytes_out += written;
  conn->queued_bytes -= MIN (conn->queued_bytes, written);
  for (guint i = 0; i < conn->n_inflight; i++)
    g_bytes_unref (conn->inflight[i]);
  conn->n_inflight = 0;

  if (!conn->closed)
    {
      if (!ok)
        {
          g_autoptr(GError) net = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                               "Connection to %s lost: %s", conn->peer,
                                               error->message);
          tlspyo_connection_close (conn, net);
        }
      else
        start_write (conn);
    }

  maybe_close_stream (conn);
  tlspyo_connection_unref (conn);
}

static void
start_write (TlspyoConnection *conn)
{
  gsize total = 0;

  if (conn->closed || conn->writing || gate_holds (conn))
    return;

  flush_staging (conn);
  if (g_queue_is_empty (&conn->pending))
    {
      if (conn->close_when_flushed)
        {
          g_autoptr(GError) error = g_steal_pointer (&conn->flush_close_error);
          tlspyo_connection_close (conn, error);
        }
      return;
    }

  while (conn->n_inflight < MAX_VECTORS && total < WRITE_SLICE_MAX &&
         !g_queue_is_empty (&conn->pending))
    {
      GBytes *piece = g_queue_pop_head (&conn->pending);
      gsize size = g_bytes_get_size (piece);

      if (size > WRITE_SLICE_MAX - total)
        {
          /* The rest goes in a later write; slices share the buffer. */
          gsize room = WRITE_SLICE_MAX - total;
          GBytes *whole = piece;

          g_queue_push_head (&conn->pending, g_bytes_new_from_bytes (whole, room, size - room));
          piece = g_bytes_new_from_bytes (whole, 0, room);
          g_bytes_unref (whole);
          size = room;
        }
      conn->vectors[conn->n_inflight].buffer = g_bytes_get_data (piece, NULL);
      conn->vectors[conn->n_inflight].size = size;
      conn->inflight[conn->n_inflight++] = piece;
      total += size;
    }

  conn->writing = TRUE;
  g_output_stream_writev_all_async (conn->output, conn->vectors, conn->n_inflight,
                                    G_PRIORITY_DEFAULT, conn->cancellable, writev_cb,
                                    tlspyo_connection_ref (conn));
}

static gboolean
write_source_cb (gpointer user_data)
{
  TlspyoConnection *conn = user_data;

  g_clear_pointer (&conn->write_source, g_source_unref);
  start_write (conn);
  return G_SOURCE_REMOVE;
}

/* Queues the body after a header and metadata already in the staging
 * buffer, and makes sure a write follows. */
static void
queue_body (TlspyoConnection *conn,
            guint             old_len,
            GBytes           *body,
            GBytes           *body_trailer)
{
  gsize body_len = body ? g_bytes_get_size (body) : 0;
  gsize trailer_len = body_trailer ? g_bytes_get_size (body_trailer) : 0;

  conn->queued_bytes += conn->staging->len - old_len + body_len + trailer_len;
  if (body != NULL)
    {
      if (body_len <= COALESCE_MAX)
        g_byte_array_append (conn->staging, g_bytes_get_data (body, NULL), body_len);
      else
        {
          flush_staging (conn);
          g_queue_push_tail (&conn->pending, g_bytes_ref (body));
        }
    }
  if (body_trailer != NULL)
    g_byte_array_append (conn->staging, g_bytes_get_data (body_trailer, NULL), trailer_len);

  if (conn->staging->len >= STAGING_MAX)
    flush_staging (conn);

  /* Defer the write to the end of this dispatch, so that every frame the
   * current event produces leaves in one write. */
  if (!conn->writing && conn->write_source == NULL)
    {
      conn->write_source = g_idle_source_new ();
      g_source_set_priority (conn->write_source, G_PRIORITY_DEFAULT);
      g_source_set_callback (conn->write_source, write_source_cb, conn, NULL);
      g_source_set_static_name (conn->write_source, "[tlspyo] write");
      g_source_attach (conn->write_source, g_main_context_get_thread_default ());
    }
}

static gsize
body_size (GBytes *body,
           GBytes *body_trailer)
{
  return (body ? g_bytes_get_size (body) : 0) +
         (body_trailer ? g_bytes_get_size (body_trailer) : 0);
}

void
tlspyo_connection_send (TlspyoConnection *conn,
                        TlspyoFrameType   type,
                        GVariant         *meta,
                        GBytes           *body,
                        GBytes           *body_trailer)
{
  guint old_len = conn->staging->len;

  if (conn->closed || conn->close_when_flushed)
    {
      if (meta != NULL)
        g_variant_unref (g_variant_ref_sink (meta));
      return;
    }

  tlspyo_frame_append (conn->staging, type, meta, body_size (body, body_trailer));
  queue_body (conn, old_len, body, body_trailer);
}

void
tlspyo_connection_send_serialized (TlspyoConnection *conn,
                                   TlspyoFrameType   type,
                                   GBytes           *meta,
                                   GBytes           *body,
                                   GBytes           *body_trailer)
{
  guint old_len = conn->staging->len;

  if (conn->closed || conn->close_when_flushed)
    return;

  tlspyo_frame_append_serialized (conn->staging, type, meta, body_size (body, body_trailer));
  queue_body (conn, old_len, body, body_trailer);
}

/* The write gate (durable relay) */

struct _TlspyoWriteGate {
  guint      ref_count;  /* worker thread only, as the connections */
  gboolean   closed;
  GPtrArray *waiting;    /* of TlspyoConnection, a reference each */
};

TlspyoWriteGate *
tlspyo_write_gate_new (void)
{
  TlspyoWriteGate *gate = g_new0 (TlspyoWriteGate, 1);

  gate->ref_count = 1;
  gate->waiting = g_ptr_array_new ();
  return gate;
}

TlspyoWriteGate *
tlspyo_write_gate_ref (TlspyoWriteGate *gate)
{
  gate->ref_count++;
  return gate;
}

void
tlspyo_write_gate_unref (TlspyoWriteGate *gate)
{
  if (--gate->ref_count > 0)
    return;
  /* Waiting connections hold a reference to the gate: none is left. */
  g_assert (gate->waiting->len == 0);
  g_ptr_array_unref (gate->waiting);
  g_free (gate);
}

void
tlspyo_write_gate_close (TlspyoWriteGate *gate)
{
  gate->closed = TRUE;
}

gboolean
tlspyo_write_gate_is_closed (TlspyoWriteGate *gate)
{
  return gate->closed;
}

/* Restarts the writes that waited. A connection's write may close it, and
 * its closed callback change state again and close the gate: the
 * connections after it then wait again, for the next opening. */
void
tlspyo_write_gate_open (TlspyoWriteGate *gate)
{
  g_autoptr(GPtrArray) waiting = NULL;

  gate->closed = FALSE;
  if (gate->waiting->len == 0)
    return;
  waiting = g_steal_pointer (&gate->waiting);
  gate->waiting = g_ptr_array_new ();
  for (guint i = 0; i < waiting->len; i++)
    {
      TlspyoConnection *conn = g_ptr_array_index (waiting, i);

      conn->gate_waiting = FALSE;
      start_write (conn);
      tlspyo_connection_unref (conn);
    }
}

void
tlspyo_connection_set_write_gate (TlspyoConnection *conn,
                                  TlspyoWriteGate  *gate)
{
  g_return_if_fail (conn->gate == NULL);

  conn->gate = tlspyo_write_gate_ref (gate);
}

/* Whether @conn's write must wait for the gate; if so, it waits (once). */
static gboolean
gate_holds (TlspyoConnection *conn)
{
  if (conn->gate == NULL || !conn->gate->closed)
    return FALSE;
  if (!conn->gate_waiting)
    {
      conn->gate_waiting = TRUE;
      g_ptr_array_add (conn->gate->waiting, tlspyo_connection_ref (conn));
    }
  return TRUE;
}

/* A closed connection writes nothing more: it stops waiting, which also
 * breaks the reference cycle with a gate that never opens again. */
static void
gate_forget (TlspyoConnection *conn)
{
  if (!conn->gate_waiting)
    return;
  conn->gate_waiting = FALSE;
  g_ptr_array_remove_fast (conn->gate->waiting, conn);
  /* The caller (close) holds a reference of its own. */
  tlspyo_connection_unref (conn);
}
