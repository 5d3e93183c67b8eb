/* SPDX-License-Identifier: MIT */
/* Keepalive and large objects: a connection busy carrying one long body
 * must not be taken for dead. The side that sends the body cannot get an
 * answer to its PING while the PING waits behind the body, and hears
 * nothing else from a peer that only reads; what shows that peer alive is
 * the body itself leaving, the bytes the peer reads. The tests' loopback
 * proxy throttles one direction, so that the body takes many keepalive
 * intervals to cross, as over a slow link (or under valgrind). */

#include "config.h"

#include <string.h>

#include "tlspyo-test-proxy.h"
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
                    TlspyoTestProxy   *proxy,
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
run_slow_link (TlspyoTestFixture        *fixture,
               TlspyoTestProxyDirection  throttled)
{
  g_autoptr(GVariant) body = make_body ();
  Losses losses = { 0 };
  TlspyoEndpoint *sender, *receiver, *behind;
  TlspyoTestProxyOptions options = {
    .socket_buffer = SOCKET_BUFFER,
    .throttled = throttled,
    .throttle_bytes = CHUNK,
    .throttle_ms = tick_ms,
  };
  TlspyoTestProxy *proxy;
  gint64 start;

  g_object_set (fixture->relay, "keepalive-interval", interval, NULL);
  tlspyo_test_fixture_start (fixture);
  proxy = tlspyo_test_proxy_new_full (fixture->port, &options);
  if (throttled == TLSPYO_TEST_PROXY_TO_RELAY)
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
                  BODY_SIZE / (1024 * 1024),
                  throttled == TLSPYO_TEST_PROXY_TO_RELAY ? "up" : "down",
                  (g_get_monotonic_time () - start) / 1e6, interval);

  g_assert_cmpuint (losses.endpoint_disconnected, ==, 0);
  g_assert_cmpuint (losses.relay_disconnected, ==, 0);
  g_assert_true (tlspyo_endpoint_get_connected (behind));
  g_assert_cmpuint (tlspyo_test_proxy_get_n_accepted (proxy), ==, 1);

  g_signal_handlers_disconnect_by_data (fixture->relay, &losses);
  g_signal_handlers_disconnect_by_data (behind, &losses);
  tlspyo_endpoint_stop (behind);
  tlspyo_test_proxy_free (proxy);
}

static void
test_slow_upload (TlspyoTestFixture *fixture,
                  gconstpointer      data)
{
  run_slow_link (fixture, TLSPYO_TEST_PROXY_TO_RELAY);
}

static void
test_slow_download (TlspyoTestFixture *fixture,
                    gconstpointer      data)
{
  run_slow_link (fixture, TLSPYO_TEST_PROXY_TO_ENDPOINT);
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
