/* SPDX-License-Identifier: MIT */
#include "tlspyo-test-proxy.h"

#include <sys/socket.h>

#include "tlspyo-test-utils.h"

/* Bytes read at a time, unless a throttle says otherwise; and the most a
 * throttle may say. */
#define PUMP_CHUNK   16384
#define PUMP_BUFFER  (64 * 1024)

typedef struct _ProxyConn ProxyConn;

/* One direction of a connection. */
typedef struct {
  ProxyConn     *pc;
  GInputStream  *in;
  GOutputStream *out;
  gboolean       busy;      /* an operation is pending: its callback will run */
  gboolean       frozen;    /* this direction only */
  gsize          held;      /* read while frozen, written when thawed */
  double         truncate;  /* > 0: forward this part of the next chunk, then cut */
  GSource       *stall;     /* thaws this direction when it fires */
  gsize          chunk;     /* read at most this much at a time */
  guint          pause_ms;  /* > 0: throttled, stalled this long after each write */
  guint8         buf[PUMP_BUFFER];
} Pump;

struct _ProxyConn {
  TlspyoTestProxy   *proxy;
  GSocketConnection *down;   /* the endpoint's side */
  GSocketConnection *up;     /* the relay's side */
  gboolean           frozen;
  gboolean           closing;  /* cut after the write in progress (truncation) */
  GCancellable      *cancellable;
  Pump               pumps[2];
};

struct _TlspyoTestProxyPrivate {
  GMainContext          *context;
  GSocketService        *service;
  GSocketClient         *client;
  guint                  relay_port;
  TlspyoTestProxyOptions options;
  GPtrArray             *conns;   /* ProxyConn*, owned; closed ones too, until freed */
};

static void pump_read  (Pump  *pump);
static void pump_stall (Pump  *pump,
                        guint  ms);

static void
pump_clear_stall (Pump *pump)
{
  if (pump->stall != NULL)
    {
      g_source_destroy (pump->stall);
      g_clear_pointer (&pump->stall, g_source_unref);
    }
}

static gboolean
proxy_conn_is_open (ProxyConn *pc)
{
  return !g_cancellable_is_cancelled (pc->cancellable);
}

static void
proxy_conn_close (ProxyConn *pc)
{
  g_cancellable_cancel (pc->cancellable);
  for (guint i = 0; i < G_N_ELEMENTS (pc->pumps); i++)
    pump_clear_stall (&pc->pumps[i]);
  if (pc->down != NULL)
    g_io_stream_close (G_IO_STREAM (pc->down), NULL, NULL);
  if (pc->up != NULL)
    g_io_stream_close (G_IO_STREAM (pc->up), NULL, NULL);
}

static void
proxy_conn_free (gpointer data)
{
  ProxyConn *pc = data;

  proxy_conn_close (pc);
  g_clear_object (&pc->down);
  g_clear_object (&pc->up);
  g_clear_object (&pc->cancellable);
  g_free (pc);
}

static void
pump_write_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Pump *pump = user_data;
  gboolean ok = g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL);

  pump->busy = FALSE;
  if (!ok || pump->pc->closing)
    {
      proxy_conn_close (pump->pc);
      return;
    }
  if (pump->pause_ms > 0)
    pump_stall (pump, pump->pause_ms);
  else
    pump_read (pump);
}

static void
pump_write (Pump  *pump,
            gsize  n)
{
  pump->busy = TRUE;
  g_output_stream_write_all_async (pump->out, pump->buf, n, G_PRIORITY_DEFAULT,
                                   pump->pc->cancellable, pump_write_cb, pump);
}

static gboolean
pump_is_stopped (Pump *pump)
{
  return pump->pc->frozen || pump->frozen || !proxy_conn_is_open (pump->pc);
}

static void
pump_read_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Pump *pump = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);

  pump->busy = FALSE;
  if (n <= 0)
    {
      proxy_conn_close (pump->pc);
      return;
    }
  /* Frozen: what was read is held, and nothing more is read. */
  if (pump_is_stopped (pump))
    {
      pump->held = n;
      return;
    }
  /* A chunk of one byte cannot be cut short: wait for a longer one. */
  if (pump->truncate > 0 && n > 1)
    {
      gsize part = CLAMP ((gsize) (n * pump->truncate), 1, (gsize) n - 1);

      pump->truncate = 0;
      pump->pc->closing = TRUE;
      pump_write (pump, part);
      return;
    }
  pump_write (pump, n);
}

static void
pump_read (Pump *pump)
{
  if (pump_is_stopped (pump))
    return;
  pump->busy = TRUE;
  g_input_stream_read_async (pump->in, pump->buf, pump->chunk, G_PRIORITY_DEFAULT,
                             pump->pc->cancellable, pump_read_cb, pump);
}

static void
pump_thaw (Pump *pump)
{
  pump->frozen = FALSE;
  if (pump->busy || pump_is_stopped (pump))
    return;
  if (pump->held > 0)
    {
      gsize held = pump->held;

      pump->held = 0;
      pump_write (pump, held);
    }
  else
    pump_read (pump);
}

static gboolean
stall_over_cb (gpointer data)
{
  Pump *pump = data;

  g_clear_pointer (&pump->stall, g_source_unref);
  pump_thaw (pump);
  return G_SOURCE_REMOVE;
}

/* Stops @pump for @ms milliseconds, then lets it flow again. */
static void
pump_stall (Pump  *pump,
            guint  ms)
{
  /* Stalled already: the new stall replaces the rest of the old one. */
  pump_clear_stall (pump);
  pump->frozen = TRUE;
  pump->stall = g_timeout_source_new (ms);
  g_source_set_callback (pump->stall, stall_over_cb, pump, NULL);
  g_source_attach (pump->stall, pump->pc->proxy->priv->context);
}

static void
pump_start (Pump                     *pump,
            ProxyConn                *pc,
            TlspyoTestProxyDirection  direction,
            GSocketConnection        *from,
            GSocketConnection        *to)
{
  const TlspyoTestProxyOptions *options = &pc->proxy->priv->options;

  pump->pc = pc;
  pump->in = g_io_stream_get_input_stream (G_IO_STREAM (from));
  pump->out = g_io_stream_get_output_stream (G_IO_STREAM (to));
  pump->chunk = PUMP_CHUNK;
  if (options->throttle_bytes > 0 && options->throttled == direction)
    {
      pump->chunk = options->throttle_bytes;
      pump->pause_ms = options->throttle_ms;
    }
  pump_read (pump);
}

static void
set_socket_buffer (GSocket *socket,
                   int      size)
{
  g_autoptr(GError) error = NULL;

  g_socket_set_option (socket, SOL_SOCKET, SO_RCVBUF, size, &error);
  g_assert_no_error (error);
}

/* Accepted sockets inherit the listening socket's receive buffer. */
static void
listener_event_cb (GSocketListener      *listener,
                   GSocketListenerEvent  event,
                   GSocket              *socket,
                   gpointer              user_data)
{
  TlspyoTestProxy *proxy = user_data;

  if (event == G_SOCKET_LISTENER_BINDING)
    set_socket_buffer (socket, proxy->priv->options.socket_buffer);
}

static void
client_event_cb (GSocketClient      *client,
                 GSocketClientEvent  event,
                 GSocketConnectable *connectable,
                 GIOStream          *connection,
                 gpointer            user_data)
{
  TlspyoTestProxy *proxy = user_data;

  if (event == G_SOCKET_CLIENT_CONNECTING)
    set_socket_buffer (g_socket_connection_get_socket (G_SOCKET_CONNECTION (connection)),
                       proxy->priv->options.socket_buffer);
}

static gboolean
proxy_incoming_cb (GSocketService    *service,
                   GSocketConnection *connection,
                   GObject           *source_object,
                   gpointer           user_data)
{
  TlspyoTestProxy *proxy = user_data;
  TlspyoTestProxyPrivate *priv = proxy->priv;
  g_autoptr(GError) error = NULL;
  ProxyConn *pc = g_new0 (ProxyConn, 1);

  pc->proxy = proxy;
  pc->cancellable = g_cancellable_new ();
  pc->down = g_object_ref (connection);
  /* Loopback: connecting is immediate (or refused at once when the relay
   * is down), a blocking call is fine. */
  pc->up = g_socket_client_connect_to_host (priv->client, "127.0.0.1", priv->relay_port,
                                            NULL, &error);
  g_ptr_array_add (priv->conns, pc);
  g_atomic_int_inc (&proxy->n_accepted);
  if (pc->up == NULL)
    {
      proxy_conn_close (pc);
      return TRUE;
    }
  pump_start (&pc->pumps[TLSPYO_TEST_PROXY_TO_RELAY], pc, TLSPYO_TEST_PROXY_TO_RELAY,
              pc->down, pc->up);
  pump_start (&pc->pumps[TLSPYO_TEST_PROXY_TO_ENDPOINT], pc, TLSPYO_TEST_PROXY_TO_ENDPOINT,
              pc->up, pc->down);
  return TRUE;
}

TlspyoTestProxy *
tlspyo_test_proxy_new (guint relay_port)
{
  return tlspyo_test_proxy_new_full (relay_port, NULL);
}

TlspyoTestProxy *
tlspyo_test_proxy_new_full (guint                         relay_port,
                            const TlspyoTestProxyOptions *options)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  TlspyoTestProxy *proxy;
  TlspyoTestProxyPrivate *priv;

  g_return_val_if_fail (options == NULL || options->throttle_bytes <= PUMP_BUFFER, NULL);

  proxy = g_new0 (TlspyoTestProxy, 1);
  priv = g_new0 (TlspyoTestProxyPrivate, 1);
  proxy->priv = priv;
  priv->context = g_main_context_ref_thread_default ();
  priv->relay_port = relay_port;
  if (options != NULL)
    priv->options = *options;
  priv->conns = g_ptr_array_new_with_free_func (proxy_conn_free);
  priv->client = g_socket_client_new ();
  g_socket_client_set_enable_proxy (priv->client, FALSE);
  priv->service = g_socket_service_new ();
  if (priv->options.socket_buffer > 0)
    {
      g_signal_connect (priv->client, "event", G_CALLBACK (client_event_cb), proxy);
      g_signal_connect (priv->service, "event", G_CALLBACK (listener_event_cb), proxy);
    }
  g_socket_listener_add_address (G_SOCKET_LISTENER (priv->service), any, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error);
  g_assert_no_error (error);
  proxy->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_signal_connect (priv->service, "incoming", G_CALLBACK (proxy_incoming_cb), proxy);
  g_socket_service_start (priv->service);
  return proxy;
}

guint
tlspyo_test_proxy_get_n_accepted (TlspyoTestProxy *proxy)
{
  return (guint) g_atomic_int_get (&proxy->n_accepted);
}

void
tlspyo_test_proxy_freeze_all (TlspyoTestProxy *proxy)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    ((ProxyConn *) g_ptr_array_index (proxy->priv->conns, i))->frozen = TRUE;
}

void
tlspyo_test_proxy_freeze_direction (TlspyoTestProxy          *proxy,
                                    TlspyoTestProxyDirection  direction)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    ((ProxyConn *) g_ptr_array_index (proxy->priv->conns, i))->pumps[direction].frozen = TRUE;
}

void
tlspyo_test_proxy_thaw_direction (TlspyoTestProxy          *proxy,
                                  TlspyoTestProxyDirection  direction)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    pump_thaw (&((ProxyConn *) g_ptr_array_index (proxy->priv->conns, i))->pumps[direction]);
}

void
tlspyo_test_proxy_cut_all (TlspyoTestProxy *proxy)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    proxy_conn_close (g_ptr_array_index (proxy->priv->conns, i));
}

guint
tlspyo_test_proxy_get_n_open (TlspyoTestProxy *proxy)
{
  guint n = 0;

  for (guint i = 0; i < proxy->priv->conns->len; i++)
    n += proxy_conn_is_open (g_ptr_array_index (proxy->priv->conns, i));
  return n;
}

static ProxyConn *
proxy_get_open (TlspyoTestProxy *proxy,
                guint            index)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    {
      ProxyConn *pc = g_ptr_array_index (proxy->priv->conns, i);

      if (proxy_conn_is_open (pc) && index-- == 0)
        return pc;
    }
  g_return_val_if_reached (NULL);
}

void
tlspyo_test_proxy_cut (TlspyoTestProxy *proxy,
                       guint            index)
{
  ProxyConn *pc = proxy_get_open (proxy, index);

  if (pc != NULL)
    proxy_conn_close (pc);
}

void
tlspyo_test_proxy_stall (TlspyoTestProxy          *proxy,
                         guint                     index,
                         TlspyoTestProxyDirection  direction,
                         guint                     ms)
{
  ProxyConn *pc = proxy_get_open (proxy, index);

  if (pc != NULL)
    pump_stall (&pc->pumps[direction], ms);
}

void
tlspyo_test_proxy_truncate (TlspyoTestProxy          *proxy,
                            guint                     index,
                            TlspyoTestProxyDirection  direction,
                            double                    fraction)
{
  ProxyConn *pc = proxy_get_open (proxy, index);

  g_return_if_fail (fraction > 0 && fraction < 1);
  if (pc != NULL)
    pc->pumps[direction].truncate = fraction;
}

void
tlspyo_test_proxy_heal (TlspyoTestProxy *proxy)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    {
      ProxyConn *pc = g_ptr_array_index (proxy->priv->conns, i);

      pc->frozen = FALSE;
      for (guint d = 0; d < G_N_ELEMENTS (pc->pumps); d++)
        {
          Pump *pump = &pc->pumps[d];

          pump->truncate = 0;
          pump_clear_stall (pump);
          if (pump->frozen)
            pump_thaw (pump);
        }
    }
}

static gboolean
proxy_pumps_done (TlspyoTestProxy *proxy)
{
  for (guint i = 0; i < proxy->priv->conns->len; i++)
    {
      ProxyConn *pc = g_ptr_array_index (proxy->priv->conns, i);

      if (pc->pumps[0].busy || pc->pumps[1].busy)
        return FALSE;
    }
  return TRUE;
}

void
tlspyo_test_proxy_free (TlspyoTestProxy *proxy)
{
  TlspyoTestProxyPrivate *priv = proxy->priv;
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;

  g_socket_service_stop (priv->service);
  g_socket_listener_close (G_SOCKET_LISTENER (priv->service));
  g_signal_handlers_disconnect_by_data (priv->service, proxy);
  /* Closing ends the pumps; wait (bounded) for their callbacks, on the
   * proxy's own context, which need not be the global default one.
   * Cancelled operations complete promptly, so a non-blocking iteration
   * and a short sleep suffice. */
  tlspyo_test_proxy_cut_all (proxy);
  while (!proxy_pumps_done (proxy))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("The test proxy's operations did not end within %d ms", TLSPYO_TEST_TIMEOUT_MS);
      if (!g_main_context_iteration (priv->context, FALSE))
        g_usleep (1000);
    }
  g_ptr_array_unref (priv->conns);
  g_object_unref (priv->client);
  g_object_unref (priv->service);
  g_main_context_unref (priv->context);
  g_free (priv);
  g_free (proxy);
}
