/* SPDX-License-Identifier: MIT */
/* Keepalive and large objects: a connection busy carrying one long body
 * must not be taken for dead. The side that sends the body cannot get an
 * answer to its PING while the PING waits behind the body, and hears
 * nothing else from a peer that only reads; what shows that peer alive is
 * the body itself leaving, the bytes the peer reads. A loopback proxy of
 * the test's own throttles one direction, so that the body takes many
 * keepalive intervals to cross, as over a slow link (or under valgrind). */

#include "config.h"

#include <string.h>
#include <sys/socket.h>

#include "tlspyo-test-utils.h"

/* Throttled direction: CHUNK bytes every tick_ms, about 3 MB/s. */
#define CHUNK         (32 * 1024)
#define TICK_MS       10
/* Receive buffers of the throttled sockets are kept small, so that the
 * kernel cannot swallow much of the body ahead of the throttle. */
#define SOCKET_BUFFER (64 * 1024)
/* About two seconds through the throttle: about seven intervals. */
#define BODY_SIZE     (6 * 1024 * 1024)
#define INTERVAL      0.3

/* Under valgrind (TLSPYO_TEST_TIMEOUT_MS raised) even an idle PING can take
 * longer than two intervals to be answered: the interval and the throttle
 * are both stretched, so the body still takes the same number of intervals
 * to cross. */
static guint  tick_ms = TICK_MS;
static double interval = INTERVAL;

typedef struct _Proxy     Proxy;
typedef struct _ProxyConn ProxyConn;

typedef struct {
  ProxyConn     *pc;
  GInputStream  *in;
  GOutputStream *out;
  gboolean       throttled;
  gboolean       busy;      /* a read, write or pause is pending */
  guint8         buf[CHUNK];
} Pump;

struct _ProxyConn {
  GSocketConnection *down;  /* the endpoint's side */
  GSocketConnection *up;    /* the relay's side */
  GCancellable      *cancellable;
  Pump               pumps[2];
};

typedef enum {
  TO_RELAY = 0,
  TO_ENDPOINT = 1,
} Direction;

struct _Proxy {
  GSocketService *service;
  guint           relay_port;
  guint           port;
  Direction       throttled;
  GPtrArray      *conns;  /* ProxyConn*, owned */
};

static void pump_read (Pump *pump);

static void
proxy_conn_close (ProxyConn *pc)
{
  g_cancellable_cancel (pc->cancellable);
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

static gboolean
pump_resume_cb (gpointer data)
{
  Pump *pump = data;

  pump->busy = FALSE;
  pump_read (pump);
  return G_SOURCE_REMOVE;
}

static void
pump_write_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Pump *pump = user_data;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL))
    {
      pump->busy = FALSE;
      proxy_conn_close (pump->pc);
      return;
    }
  if (pump->throttled && !g_cancellable_is_cancelled (pump->pc->cancellable))
    {
      /* busy stays TRUE: the pause is pending. */
      g_timeout_add (tick_ms, pump_resume_cb, pump);
      return;
    }
  pump->busy = FALSE;
  pump_read (pump);
}

static void
pump_read_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Pump *pump = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);

  if (n <= 0 || g_cancellable_is_cancelled (pump->pc->cancellable))
    {
      pump->busy = FALSE;
      proxy_conn_close (pump->pc);
      return;
    }
  g_output_stream_write_all_async (pump->out, pump->buf, n, G_PRIORITY_DEFAULT,
                                   pump->pc->cancellable, pump_write_cb, pump);
}

static void
pump_read (Pump *pump)
{
  if (g_cancellable_is_cancelled (pump->pc->cancellable))
    return;
  pump->busy = TRUE;
  g_input_stream_read_async (pump->in, pump->buf, sizeof pump->buf, G_PRIORITY_DEFAULT,
                             pump->pc->cancellable, pump_read_cb, pump);
}

static void
pump_start (Pump              *pump,
            ProxyConn         *pc,
            GSocketConnection *from,
            GSocketConnection *to,
            gboolean           throttled)
{
  pump->pc = pc;
  pump->in = g_io_stream_get_input_stream (G_IO_STREAM (from));
  pump->out = g_io_stream_get_output_stream (G_IO_STREAM (to));
  pump->throttled = throttled;
  pump_read (pump);
}

static void
set_small_receive_buffer (GSocket *socket)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (g_socket_set_option (socket, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER, &error));
  g_assert_no_error (error);
}

/* Connects to the relay from a socket whose receive buffer is set before
 * connecting (the window is agreed on then). */
static GSocketConnection *
connect_up (guint port)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, port);
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, &error);

  g_assert_no_error (error);
  set_small_receive_buffer (socket);
  /* Loopback: connecting is immediate, a blocking call is fine. */
  g_assert_true (g_socket_connect (socket, address, NULL, &error));
  g_assert_no_error (error);
  return g_socket_connection_factory_create_connection (socket);
}

static gboolean
proxy_incoming_cb (GSocketService    *service,
                   GSocketConnection *connection,
                   GObject           *source_object,
                   gpointer           user_data)
{
  Proxy *proxy = user_data;
  ProxyConn *pc = g_new0 (ProxyConn, 1);

  pc->cancellable = g_cancellable_new ();
  pc->down = g_object_ref (connection);
  pc->up = connect_up (proxy->relay_port);
  g_ptr_array_add (proxy->conns, pc);
  pump_start (&pc->pumps[TO_RELAY], pc, pc->down, pc->up, proxy->throttled == TO_RELAY);
  pump_start (&pc->pumps[TO_ENDPOINT], pc, pc->up, pc->down, proxy->throttled == TO_ENDPOINT);
  return TRUE;
}

static Proxy *
proxy_new (guint     relay_port,
           Direction throttled)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GSocket) socket = NULL;
  Proxy *proxy = g_new0 (Proxy, 1);

  proxy->relay_port = relay_port;
  proxy->throttled = throttled;
  proxy->conns = g_ptr_array_new_with_free_func (proxy_conn_free);

  /* Accepted sockets inherit the listener's receive buffer. */
  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                         &error);
  g_assert_no_error (error);
  set_small_receive_buffer (socket);
  g_assert_true (g_socket_bind (socket, any, FALSE, &error));
  g_assert_no_error (error);
  g_assert_true (g_socket_listen (socket, &error));
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  proxy->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));

  proxy->service = g_socket_service_new ();
  g_assert_true (g_socket_listener_add_socket (G_SOCKET_LISTENER (proxy->service), socket,
                                               NULL, &error));
  g_assert_no_error (error);
  g_signal_connect (proxy->service, "incoming", G_CALLBACK (proxy_incoming_cb), proxy);
  g_socket_service_start (proxy->service);
  return proxy;
}

static gboolean
proxy_pumps_done (gpointer data)
{
  Proxy *proxy = data;

  for (guint i = 0; i < proxy->conns->len; i++)
    {
      ProxyConn *pc = g_ptr_array_index (proxy->conns, i);

      if (pc->pumps[0].busy || pc->pumps[1].busy)
        return FALSE;
    }
  return TRUE;
}

static void
proxy_free (Proxy *proxy)
{
  g_socket_service_stop (proxy->service);
  g_socket_listener_close (G_SOCKET_LISTENER (proxy->service));
  g_signal_handlers_disconnect_by_data (proxy->service, proxy);
  /* Closing ends the pumps; wait (bounded) for their callbacks and pauses. */
  for (guint i = 0; i < proxy->conns->len; i++)
    proxy_conn_close (g_ptr_array_index (proxy->conns, i));
  g_assert_true (tlspyo_test_wait_until (proxy_pumps_done, proxy));
  g_ptr_array_unref (proxy->conns);
  g_object_unref (proxy->service);
  g_free (proxy);
}

/* Every loss of a connection, on either side. */
typedef struct {
  guint relay_disconnected;
  guint endpoint_disconnected;
} Losses;

static void
relay_disconnected_cb (TlspyoRelay *relay,
                       const char  *address,
                       Losses      *losses)
{
  g_test_message ("the relay dropped %s", address);
  losses->relay_disconnected++;
}

static void
endpoint_connected_cb (GObject    *endpoint,
                       GParamSpec *pspec,
                       Losses     *losses)
{
  if (!tlspyo_endpoint_get_connected (TLSPYO_ENDPOINT (endpoint)))
    {
      g_test_message ("an endpoint lost its connection");
      losses->endpoint_disconnected++;
    }
}

static TlspyoEndpoint *
endpoint_via_proxy (TlspyoTestFixture *fixture,
                    Proxy             *proxy,
                    const char        *groups)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (fixture, groups);
  g_autoptr(GError) error = NULL;

  g_object_set (ep, "port", proxy->port, "keepalive-interval", interval, NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_no_error (error);
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  return ep;
}

static GVariant *
make_body (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (6);
  guint32 *words = g_malloc (BODY_SIZE);

  for (gsize i = 0; i < BODY_SIZE / 4; i++)
    words[i] = g_rand_int (rand);
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, words,
                                                      BODY_SIZE, TRUE, g_free, words));
}

typedef struct {
  TlspyoEndpoint *receiver;
  Losses         *losses;
} Transfer;

static gboolean
transfer_over (gpointer data)
{
  Transfer *t = data;

  return tlspyo_endpoint_get_n_queued (t->receiver) > 0 ||
         t->losses->endpoint_disconnected > 0 || t->losses->relay_disconnected > 0;
}

/* Waits for the body at @ep, failing at once on a lost connection (which
 * would otherwise resend the body over and over until the bound passes). */
static void
expect_body (TlspyoEndpoint *ep,
             Losses         *losses,
             GVariant       *body)
{
  Transfer t = { ep, losses };
  g_autoptr(GPtrArray) got = NULL;

  tlspyo_test_wait_until (transfer_over, &t);
  g_assert_cmpuint (losses->endpoint_disconnected, ==, 0);
  g_assert_cmpuint (losses->relay_disconnected, ==, 0);
  got = tlspyo_test_pop_n (ep, 1);

  g_assert_true (g_variant_is_of_type (got->pdata[0], G_VARIANT_TYPE_BYTESTRING));
  g_assert_cmpuint (g_variant_get_size (got->pdata[0]), ==, BODY_SIZE);
  /* Not g_assert_cmpmem: it would print megabytes on failure. */
  g_assert_true (memcmp (g_variant_get_data (got->pdata[0]), g_variant_get_data (body),
                         BODY_SIZE) == 0);
}

/* A large object crosses a link slowed down in @throttled direction: the
 * endpoint behind the proxy is the sender (TO_RELAY) or the receiver
 * (TO_ENDPOINT). Its keepalive, and the relay's on that connection, must
 * count the body moving as a sign of life; nobody is taken for dead, and
 * the object is delivered once, over the first connection. */
static void
run_slow_link (TlspyoTestFixture *fixture,
               Direction          throttled)
{
  g_autoptr(GVariant) body = make_body ();
  Losses losses = { 0 };
  TlspyoEndpoint *sender, *receiver, *behind;
  Proxy *proxy;
  gint64 start;

  g_object_set (fixture->relay, "keepalive-interval", interval, NULL);
  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port, throttled);
  if (throttled == TO_RELAY)
    {
      sender = behind = endpoint_via_proxy (fixture, proxy, "sender");
      receiver = tlspyo_test_endpoint_start (fixture, "big");
    }
  else
    {
      receiver = behind = endpoint_via_proxy (fixture, proxy, "big");
      sender = tlspyo_test_endpoint_start (fixture, "sender");
    }
  g_signal_connect (fixture->relay, "endpoint-disconnected",
                    G_CALLBACK (relay_disconnected_cb), &losses);
  g_signal_connect (behind, "notify::connected", G_CALLBACK (endpoint_connected_cb), &losses);

  start = g_get_monotonic_time ();
  g_assert_true (tlspyo_endpoint_broadcast (sender, body, "big", NULL));
  expect_body (receiver, &losses, body);
  g_test_message ("%d MiB went %s in %.2f s (keepalive-interval %.2f s)",
                  BODY_SIZE / (1024 * 1024), throttled == TO_RELAY ? "up" : "down",
                  (g_get_monotonic_time () - start) / 1e6, interval);

  g_assert_cmpuint (losses.endpoint_disconnected, ==, 0);
  g_assert_cmpuint (losses.relay_disconnected, ==, 0);
  g_assert_true (tlspyo_endpoint_get_connected (behind));
  g_assert_cmpuint (proxy->conns->len, ==, 1);

  g_signal_handlers_disconnect_by_data (fixture->relay, &losses);
  g_signal_handlers_disconnect_by_data (behind, &losses);
  tlspyo_endpoint_stop (behind);
  proxy_free (proxy);
}

static void
test_slow_upload (TlspyoTestFixture *fixture,
                  gconstpointer      data)
{
  run_slow_link (fixture, TO_RELAY);
}

static void
test_slow_download (TlspyoTestFixture *fixture,
                    gconstpointer      data)
{
  run_slow_link (fixture, TO_ENDPOINT);
}

int
main (int argc, char **argv)
{
  int stretch;

  tlspyo_test_init (&argc, &argv);
  stretch = CLAMP (TLSPYO_TEST_TIMEOUT_MS / 10000, 1, 5);
  tick_ms *= stretch;
  interval *= stretch;

  TLSPYO_TEST_ADD ("/keepalive/slow-upload", test_slow_upload);
  TLSPYO_TEST_ADD ("/keepalive/slow-download", test_slow_download);
  return g_test_run ();
}
