/* SPDX-License-Identifier: MIT */
/* Reliability (issue 5): liveness, credit across reconnections. Faults are
 * made by a loopback proxy of the test's own between endpoints and relay,
 * which can freeze connections: bytes stop moving, nothing is closed, as
 * with a half-open TCP connection or a frozen process. */

#include "config.h"

#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-test-proxy.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-frame-private.h"

/* The loopback proxy (tlspyo-test-proxy.h) under the short names this
 * file's tests use. It runs on the test thread's default context, which
 * every bounded wait of the tests iterates. */
typedef TlspyoTestProxy Proxy;
typedef TlspyoTestProxyDirection Direction;
#define TO_RELAY                TLSPYO_TEST_PROXY_TO_RELAY
#define TO_ENDPOINT             TLSPYO_TEST_PROXY_TO_ENDPOINT
#define proxy_new               tlspyo_test_proxy_new
#define proxy_free              tlspyo_test_proxy_free
#define proxy_freeze_all        tlspyo_test_proxy_freeze_all
#define proxy_freeze_direction  tlspyo_test_proxy_freeze_direction
#define proxy_thaw_direction    tlspyo_test_proxy_thaw_direction
#define proxy_cut_all           tlspyo_test_proxy_cut_all

static TlspyoEndpoint *
endpoint_via_proxy (TlspyoTestFixture *fixture,
                    Proxy             *proxy,
                    const char        *groups,
                    double             keepalive)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (fixture, groups);
  g_autoptr(GError) error = NULL;

  g_object_set (ep, "port", proxy->port, "keepalive-interval", keepalive, NULL);
  tlspyo_endpoint_start (ep, &error);
  g_assert_no_error (error);
  tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  return ep;
}

typedef struct {
  guint connected;
  guint disconnected;
  guint refused;
} RelayCounts;

static void
on_connected (TlspyoRelay *relay, const char *address, char **groups, RelayCounts *c)
{
  c->connected++;
}

static void
on_disconnected (TlspyoRelay *relay, const char *address, RelayCounts *c)
{
  c->disconnected++;
}

static void
on_refused (TlspyoRelay *relay, const char *address, TlspyoError code, const char *reason,
            RelayCounts *c)
{
  g_test_message ("refused %s: %s", address, reason);
  c->refused++;
}

static void
count_relay_signals (TlspyoRelay *relay,
                     RelayCounts *c)
{
  g_signal_connect (relay, "endpoint-connected", G_CALLBACK (on_connected), c);
  g_signal_connect (relay, "endpoint-disconnected", G_CALLBACK (on_disconnected), c);
  g_signal_connect (relay, "endpoint-refused", G_CALLBACK (on_refused), c);
}

static void
disconnect_relay_signals (TlspyoRelay *relay,
                          RelayCounts *c)
{
  g_signal_handlers_disconnect_by_data (relay, c);
}

static void
sleep_iterating (int ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) ms * 1000;

  while (g_get_monotonic_time () < end)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (5000);
    }
}

typedef struct {
  RelayCounts *counts;
  guint        at_least;
} DisconnectWait;

static gboolean
disconnected_at_least (gpointer data)
{
  DisconnectWait *w = data;

  return w->counts->disconnected >= w->at_least;
}

/* An idle but healthy connection is kept: PINGs are answered, so neither
 * side drops the other, however long the silence. */
static void
test_keepalive_idle (TlspyoTestFixture *fixture,
                     gconstpointer      data)
{
  RelayCounts counts = { 0 };
  TlspyoEndpoint *a, *b;

  /* Intervals with room for a loaded machine (a PONG must come back
   * within one interval), yet many of them pass during the test. */
  g_object_set (fixture->relay, "keepalive-interval", 0.3, NULL);
  tlspyo_test_fixture_start (fixture);
  count_relay_signals (fixture->relay, &counts);

  a = tlspyo_test_endpoint_new (fixture, "g");
  b = tlspyo_test_endpoint_new (fixture, "g");
  /* a pings more often than the relay, b less: each is answered. */
  g_object_set (a, "keepalive-interval", 0.2, NULL);
  g_object_set (b, "keepalive-interval", 0.5, NULL);
  g_assert_true (tlspyo_endpoint_start (a, NULL));
  g_assert_true (tlspyo_endpoint_start (b, NULL));
  g_assert_true (tlspyo_endpoint_wait_connected (a, TLSPYO_TEST_TIMEOUT_MS, NULL));
  g_assert_true (tlspyo_endpoint_wait_connected (b, TLSPYO_TEST_TIMEOUT_MS, NULL));

  /* Many intervals of silence on every side. */
  sleep_iterating (2000);

  g_assert_true (tlspyo_endpoint_get_connected (a));
  g_assert_true (tlspyo_endpoint_get_connected (b));
  g_assert_cmpuint (counts.connected, ==, 2);
  g_assert_cmpuint (counts.disconnected, ==, 0);
  g_assert_cmpuint (counts.refused, ==, 0);

  /* And the connection still carries objects. */
  g_assert_true (tlspyo_endpoint_broadcast (a, g_variant_new_string ("still here"), "g", NULL));
  tlspyo_test_expect_string (b, "still here");
  disconnect_relay_signals (fixture->relay, &counts);
}

/* A connection frozen in the middle (no byte moves, nothing is closed) is
 * found dead by both sides: the relay drops it and the endpoint reconnects,
 * then works again. */
static void
test_keepalive_frozen (TlspyoTestFixture *fixture,
                       gconstpointer      data)
{
  const double interval = 0.2;
  RelayCounts counts = { 0 };
  DisconnectWait w = { &counts, 1 };
  Proxy *proxy;
  TlspyoEndpoint *ep, *other;
  gint64 frozen_at;

  g_object_set (fixture->relay, "keepalive-interval", interval, NULL);
  tlspyo_test_fixture_start (fixture);
  count_relay_signals (fixture->relay, &counts);
  proxy = proxy_new (fixture->port);

  ep = endpoint_via_proxy (fixture, proxy, "g", interval);
  other = tlspyo_test_endpoint_start (fixture, "g");
  g_assert_cmpuint (proxy->n_accepted, ==, 1);

  proxy_freeze_all (proxy);
  frozen_at = g_get_monotonic_time ();

  g_assert_true (tlspyo_test_wait_connected_state (ep, FALSE));
  g_test_message ("endpoint saw the frozen connection dead after %.2f s (interval %.2f s)",
                  (g_get_monotonic_time () - frozen_at) / 1e6, interval);
  g_assert_true (tlspyo_test_wait_until (disconnected_at_least, &w));
  g_test_message ("relay dropped it after %.2f s",
                  (g_get_monotonic_time () - frozen_at) / 1e6);
  /* Lost, not refused. */
  g_assert_cmpuint (counts.refused, ==, 0);

  /* The endpoint came back through a fresh connection, which works. */
  g_assert_true (tlspyo_test_wait_connected_state (ep, TRUE));
  g_assert_cmpuint (proxy->n_accepted, >=, 2);
  g_assert_true (tlspyo_endpoint_broadcast (other, g_variant_new_string ("after"), "g", NULL));
  tlspyo_test_expect_string (ep, "after");

  tlspyo_endpoint_stop (ep);
  tlspyo_endpoint_stop (other);
  disconnect_relay_signals (fixture->relay, &counts);
  proxy_free (proxy);
}

/* Without keepalive a frozen connection goes unnoticed: the detection
 * above is the keepalive's doing. */
static void
test_keepalive_disabled (TlspyoTestFixture *fixture,
                         gconstpointer      data)
{
  Proxy *proxy;
  TlspyoEndpoint *ep;

  g_object_set (fixture->relay, "keepalive-interval", 0.0, NULL);
  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  ep = endpoint_via_proxy (fixture, proxy, "g", 0.0);

  proxy_freeze_all (proxy);
  sleep_iterating (800);
  g_assert_true (tlspyo_endpoint_get_connected (ep));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (fixture->relay), ==, 1);
  g_assert_cmpuint (proxy->n_accepted, ==, 1);

  g_object_set (ep, "stop-timeout", 0.0, NULL);
  tlspyo_endpoint_stop (ep);
  proxy_free (proxy);
}

static void
restart_relay (TlspyoTestFixture *fixture,
               TlspyoEndpoint    *consumer)
{
  tlspyo_relay_stop (fixture->relay);
  g_assert_true (tlspyo_test_wait_connected_state (consumer, FALSE));
  tlspyo_test_fixture_restart (fixture);
  g_assert_true (tlspyo_test_wait_connected_state (consumer, TRUE));
}

/* notify_ready(); pop() across a relay restart: the credit the relay lost
 * is announced again, so the consumer gets its objects. */
static void
test_credit_survives_restart (TlspyoTestFixture *fixture,
                              gconstpointer      data)
{
  TlspyoEndpoint *consumer, *producer;
  g_autoptr(GPtrArray) got = NULL;
  g_autoptr(GError) error = NULL;

  tlspyo_test_fixture_start (fixture);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (consumer, "work", 3);

  /* One of the three is used before the restart. */
  producer = tlspyo_test_endpoint_start (fixture, "prod");
  g_assert_true (tlspyo_endpoint_produce (producer, g_variant_new_string ("before"), "work", NULL));
  tlspyo_test_expect_string (consumer, "before");
  tlspyo_endpoint_stop (producer);

  restart_relay (fixture, consumer);

  /* Two units of credit remain: two objects come, the third does not. */
  producer = tlspyo_test_endpoint_start (fixture, "prod");
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *s = g_strdup_printf ("after-%u", i);
      g_assert_true (tlspyo_endpoint_produce (producer, g_variant_new_string (s), "work", NULL));
    }
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  tlspyo_test_expect_string (consumer, "after-0");
  tlspyo_test_expect_string (consumer, "after-1");
  tlspyo_test_expect_nothing (consumer, 300);

  /* The third is still queued at the relay, for the next credit. */
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", 1, NULL));
  tlspyo_test_expect_string (consumer, "after-2");
  got = tlspyo_endpoint_pop (consumer, 1, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
}

/* notify_ready(-1) asks for what is queued at that moment: it is not
 * remembered across a reconnection. */
static void
test_credit_all_not_remembered (TlspyoTestFixture *fixture,
                                gconstpointer      data)
{
  TlspyoEndpoint *consumer, *producer;

  tlspyo_test_fixture_start (fixture);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (consumer, "work", -1);

  restart_relay (fixture, consumer);

  producer = tlspyo_test_endpoint_start (fixture, "prod");
  g_assert_true (tlspyo_endpoint_produce (producer, g_variant_new_string ("x"), "work", NULL));
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  tlspyo_test_expect_nothing (consumer, 300);
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", 1, NULL));
  tlspyo_test_expect_string (consumer, "x");
}

/* Exactly once, endpoint to relay (issue 5). */

static void
produce_numbered (TlspyoEndpoint *ep,
                  const char     *prefix,
                  guint           n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *s = g_strdup_printf ("%s-%u", prefix, i);

      tlspyo_test_produce_string (ep, s, "work");
    }
}

static void
expect_numbered (TlspyoEndpoint *ep,
                 const char     *prefix,
                 guint           n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *s = g_strdup_printf ("%s-%u", prefix, i);

      tlspyo_test_expect_string (ep, s);
    }
}

/* @consumer gives the relay @credit for "work"; a new producer sends it
 * "PREFIX-0".. "PREFIX-(n-1)", which it then holds (bounded). Returns the
 * producer. */
static TlspyoEndpoint *
hold_numbered (TlspyoTestFixture *fixture,
               TlspyoEndpoint    *consumer,
               int                credit,
               const char        *prefix,
               guint              n)
{
  TlspyoEndpoint *producer;

  tlspyo_test_give_credit (consumer, "work", credit);
  producer = tlspyo_test_endpoint_start (fixture, "prod");
  produce_numbered (producer, prefix, n);
  tlspyo_test_wait_n_queued (consumer, n);
  return producer;
}

/* A consumer with credit for @n objects of "work", and a producer through
 * the proxy whose connection has carried one object, so that it is past
 * RESUMED and sends at once. */
static void
session_setup (TlspyoTestFixture  *fixture,
               Proxy              *proxy,
               guint               n,
               TlspyoEndpoint    **producer,
               TlspyoEndpoint    **consumer)
{
  *consumer = tlspyo_test_endpoint_start (fixture, "work");
  /* The warm-up object, @n, and one more. */
  tlspyo_test_give_credit (*consumer, "work", n + 2);
  *producer = endpoint_via_proxy (fixture, proxy, "prod", 0.0);
  produce_numbered (*producer, "warmup", 1);
  expect_numbered (*consumer, "warmup", 1);
}

/* Objects lost with a connection (they never reached the relay) are sent
 * again on the next one: each arrives once, in order. */
static void
test_session_resend_lost (TlspyoTestFixture *fixture,
                          gconstpointer      data)
{
  const guint n = 20;
  TlspyoEndpoint *producer, *consumer;
  Proxy *proxy;

  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  session_setup (fixture, proxy, n, &producer, &consumer);

  proxy_freeze_direction (proxy, TO_RELAY);
  produce_numbered (producer, "obj", n);
  tlspyo_test_expect_nothing (consumer, 200);
  g_assert_false (tlspyo_endpoint_flush (producer, 100, NULL));

  proxy_cut_all (proxy);
  expect_numbered (consumer, "obj", n);
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  tlspyo_test_expect_nothing (consumer, 200);
  g_assert_cmpuint (proxy->n_accepted, >=, 2);

  tlspyo_endpoint_stop (producer);
  proxy_free (proxy);
}

/* Objects the relay handled but whose acknowledgement was lost with the
 * connection are not handled twice: the relay's RESUMED tells the endpoint
 * where it is, and the endpoint drops them. */
static void
test_session_no_duplicates (TlspyoTestFixture *fixture,
                            gconstpointer      data)
{
  const guint n = 20;
  TlspyoEndpoint *producer, *consumer;
  Proxy *proxy;

  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  session_setup (fixture, proxy, n, &producer, &consumer);

  proxy_freeze_direction (proxy, TO_ENDPOINT);
  produce_numbered (producer, "obj", n);
  expect_numbered (consumer, "obj", n);
  /* Delivered, yet not acknowledged to the producer. */
  g_assert_false (tlspyo_endpoint_flush (producer, 100, NULL));

  proxy_cut_all (proxy);
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  tlspyo_test_expect_nothing (consumer, 300);
  g_assert_cmpuint (proxy->n_accepted, >=, 2);

  produce_numbered (producer, "after", 1);
  expect_numbered (consumer, "after", 1);
  tlspyo_test_expect_nothing (consumer, 100);

  tlspyo_endpoint_stop (producer);
  proxy_free (proxy);
}

/* max-buffered-bytes bounds what an endpoint holds while the relay is
 * away: past it sends fail with LIMIT, and nothing accepted is lost. */
static void
test_session_max_buffered (TlspyoTestFixture *fixture,
                           gconstpointer      data)
{
  TlspyoEndpoint *producer, *consumer;
  g_autoptr(GError) error = NULL;
  g_autofree char *big = g_strnfill (1000, 'x');
  guint accepted = 0;

  tlspyo_test_fixture_start (fixture);
  tlspyo_relay_stop (fixture->relay);

  producer = tlspyo_test_endpoint_new (fixture, "prod");
  g_object_set (producer, "max-buffered-bytes", (guint64) 8192, NULL);
  g_assert_true (tlspyo_endpoint_start (producer, NULL));

  /* Alone more than the bound: never sendable, and said so. */
  {
    g_autofree char *huge = g_strnfill (9000, 'h');

    g_assert_false (tlspyo_endpoint_produce (producer, g_variant_new_string (huge), "work",
                                             &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_LIMIT);
    g_assert_nonnull (strstr (error->message, "max-buffered-bytes"));
    g_clear_error (&error);
  }

  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *s = g_strdup_printf ("%u-%s", i, big);

      if (!tlspyo_endpoint_produce (producer, g_variant_new_string (s), "work", &error))
        break;
      accepted++;
    }
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_LIMIT);
  g_assert_nonnull (strstr (error->message, "max-buffered-bytes"));
  g_test_message ("accepted %u objects of about 1 kB before: %s", accepted, error->message);
  g_clear_error (&error);
  g_assert_cmpuint (accepted, >=, 5);
  g_assert_cmpuint (accepted, <=, 8);

  /* The relay comes back: every accepted object arrives, then sending
   * works again. */
  tlspyo_test_fixture_restart (fixture);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", -1, NULL));
  for (guint i = 0; i < accepted; i++)
    {
      g_autofree char *s = g_strdup_printf ("%u-%s", i, big);

      tlspyo_test_expect_string (consumer, s);
    }
  tlspyo_test_expect_nothing (consumer, 100);
  g_assert_true (tlspyo_endpoint_produce (producer, g_variant_new_string ("again"), "work",
                                          &error));
  g_assert_no_error (error);
}

/* The relay's side of it, driven by hand over plain TCP: two connections
 * of one session, the second sending frames the first already sent under
 * the same numbers (as a reconnected endpoint does while the relay still
 * reads the old connection). Those are acknowledged and skipped. */

static guint64
raw_expect_resumed (TlspyoTestRaw *raw)
{
  guint64 max_size;
  guint64 next = tlspyo_test_raw_expect_resumed (raw, &max_size);

  g_assert_cmpuint (max_size, ==, TLSPYO_DEFAULT_MAX_OBJECT_SIZE);
  return next;
}

/* A new connection of a session takes over: the relay closes the one it
 * still reads (the endpoint has one at a time, so that one is dead) and
 * resumes after what it handled. */
static void
test_session_takeover (TlspyoTestFixture *fixture,
                       gconstpointer      data)
{
  guint8 id[TLSPYO_SESSION_ID_SIZE];
  TlspyoEndpoint *consumer;
  TlspyoTestRaw *a, *b;

  tlspyo_test_fixture_start (fixture);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (consumer, "work", 100);
  tlspyo_auth_random (id, sizeof id);

  a = tlspyo_test_raw_join (fixture->port, "prod", id);
  g_assert_cmpuint (raw_expect_resumed (a), ==, 0);
  tlspyo_test_raw_produce (a, "work", "a-0");
  tlspyo_test_raw_produce (a, "work", "a-1");
  tlspyo_test_raw_expect_ack (a, 2);

  b = tlspyo_test_raw_join (fixture->port, "prod", id);
  g_assert_cmpuint (raw_expect_resumed (b), ==, 2);
  tlspyo_test_raw_expect_closed (a);
  tlspyo_test_raw_produce (b, "work", "b-2");
  tlspyo_test_raw_expect_ack (b, 1);

  expect_numbered (consumer, "a", 2);
  tlspyo_test_expect_string (consumer, "b-2");
  tlspyo_test_expect_nothing (consumer, 200);

  tlspyo_test_raw_free (a);
  tlspyo_test_raw_free (b);
}

/* Relay -> consumer (issue 5): produced objects stay in flight at the
 * relay until the consumer's application took them. Observed through
 * tlspyo_relay_get_stats(). */

static guint64
group_stat (TlspyoRelay *relay,
            const char  *group,
            const char  *key)
{
  g_autoptr(GVariant) stats = g_variant_ref_sink (tlspyo_relay_get_stats (relay));
  g_autoptr(GVariant) groups = g_variant_lookup_value (stats, "groups",
                                                       G_VARIANT_TYPE ("a{sa{sv}}"));
  g_autoptr(GVariant) entry = NULL;
  guint64 value = 0;

  g_assert_nonnull (groups);
  entry = g_variant_lookup_value (groups, group, G_VARIANT_TYPE_VARDICT);
  if (entry == NULL)
    return 0;
  g_assert_true (g_variant_lookup (entry, key, "t", &value));
  return value;
}

static guint64
total_stat (TlspyoRelay *relay,
            const char  *key)
{
  g_autoptr(GVariant) stats = g_variant_ref_sink (tlspyo_relay_get_stats (relay));
  guint64 value = 0;

  g_assert_true (g_variant_lookup (stats, key, "t", &value));
  return value;
}

typedef struct {
  TlspyoRelay *relay;
  const char  *group;
  const char  *key;
  guint64      expected;
} StatWait;

static gboolean
stat_reached (gpointer data)
{
  StatWait *w = data;

  return group_stat (w->relay, w->group, w->key) == w->expected;
}

static void
wait_group_stat (TlspyoRelay *relay,
                 const char  *group,
                 const char  *key,
                 guint64      expected)
{
  StatWait w = { relay, group, key, expected };

  if (!tlspyo_test_wait_until (stat_reached, &w))
    g_error ("Group '%s': %s is %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT,
             group, key, group_stat (relay, group, key), expected);
}

static gboolean
proxy_accepted_two (gpointer data)
{
  Proxy *proxy = data;

  return proxy->n_accepted >= 2;
}

/* A consumer's connection ends while it holds objects its application has
 * not taken: the relay keeps them for its session (parked), the consumer
 * suspends them, and gets them when it is back; what was queued meanwhile
 * waits for credit. Each arrives once, in order. */
static void
test_taken_requeue_on_cut (TlspyoTestFixture *fixture,
                           gconstpointer      data)
{
  TlspyoEndpoint *consumer, *producer;
  g_autoptr(GPtrArray) got = NULL;
  g_autoptr(GError) error = NULL;
  Proxy *proxy;

  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  consumer = endpoint_via_proxy (fixture, proxy, "work", 0.0);
  tlspyo_test_give_credit (consumer, "work", 3);

  producer = tlspyo_test_endpoint_start (fixture, "prod");
  produce_numbered (producer, "obj", 4);
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  tlspyo_test_wait_n_queued (consumer, 3);
  wait_group_stat (fixture->relay, "work", "in-flight", 3);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "queued"), ==, 1);

  /* The application takes one: the relay hears of it. */
  got = tlspyo_endpoint_pop (consumer, 1, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (got->pdata[0], NULL), ==, "obj-0");
  wait_group_stat (fixture->relay, "work", "in-flight", 2);

  proxy_cut_all (proxy);
  /* Not popped before the endpoint saw the cut: suspended, then kept for
   * it by the relay and available again once it is back. */
  g_assert_true (tlspyo_test_wait_until (proxy_accepted_two, proxy));
  tlspyo_test_expect_string (consumer, "obj-1");
  tlspyo_test_expect_string (consumer, "obj-2");
  /* obj-3 waits for credit: the two given back were used again. */
  tlspyo_test_expect_nothing (consumer, 300);
  g_assert_cmpuint (proxy->n_accepted, >=, 2);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "queued"), ==, 1);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "in-flight"), ==, 0);

  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", 1, NULL));
  tlspyo_test_expect_string (consumer, "obj-3");
  tlspyo_test_expect_nothing (consumer, 200);
  wait_group_stat (fixture->relay, "work", "in-flight", 0);

  g_object_set (consumer, "stop-timeout", 0.0, NULL);
  tlspyo_endpoint_stop (consumer);
  proxy_free (proxy);
}

/* A consumer that stops with objects it did not take: another consumer
 * gets them, in order; the stopped one keeps none of them. */
static void
test_taken_stop_gives_back (TlspyoTestFixture *fixture,
                            gconstpointer      data)
{
  TlspyoEndpoint *a, *b;
  g_autoptr(GPtrArray) got = NULL;

  tlspyo_test_fixture_start (fixture);
  a = tlspyo_test_endpoint_start (fixture, "work");
  hold_numbered (fixture, a, 3, "obj", 3);
  got = tlspyo_test_pop_n (a, 1);
  g_assert_cmpstr (g_variant_get_string (got->pdata[0], NULL), ==, "obj-0");
  wait_group_stat (fixture->relay, "work", "in-flight", 2);

  b = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (b, "work", 5);
  tlspyo_test_expect_nothing (b, 100);

  /* Taken right before stop(): the relay hears of it before the goodbye. */
  g_clear_pointer (&got, g_ptr_array_unref);
  got = tlspyo_endpoint_pop (a, 1, 0, NULL);
  g_assert_cmpuint (got->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (got->pdata[0], NULL), ==, "obj-1");
  tlspyo_endpoint_stop (a);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (a), ==, 0);
  tlspyo_test_expect_string (b, "obj-2");
  tlspyo_test_expect_nothing (b, 200);
  wait_group_stat (fixture->relay, "work", "in-flight", 0);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "credit"), ==, 4);
}

static gboolean
take_in_handler (TlspyoEndpoint *ep,
                 GVariant       *object,
                 const char     *group,
                 guint          *n)
{
  (*n)++;
  return TRUE;
}

static gboolean
handled_two (gpointer data)
{
  return *(guint *) data >= 2;
}

/* An object-received handler that returns TRUE takes the object. */
static void
test_taken_by_handler (TlspyoTestFixture *fixture,
                       gconstpointer      data)
{
  TlspyoEndpoint *consumer, *producer;
  guint n = 0;

  tlspyo_test_fixture_start (fixture);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  g_signal_connect (consumer, "object-received", G_CALLBACK (take_in_handler), &n);
  tlspyo_test_give_credit (consumer, "work", -1);
  producer = tlspyo_test_endpoint_start (fixture, "prod");
  produce_numbered (producer, "obj", 2);
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", -1, NULL));
  g_assert_true (tlspyo_test_wait_until (handled_two, &n));
  wait_group_stat (fixture->relay, "work", "in-flight", 0);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (consumer), ==, 0);
  g_signal_handlers_disconnect_by_data (consumer, &n);
}

/* Exactly once to the application across faults (issue 5, protocol 2). */

static void
pop_expect (TlspyoEndpoint *ep,
            const char     *expected)
{
  g_autoptr(GPtrArray) got = tlspyo_test_pop_n (ep, 1);

  g_assert_cmpstr (g_variant_get_string (got->pdata[0], NULL), ==, expected);
}

/* The TAKEN-lost window: the application takes objects, and the
 * connection is cut before their TAKEN reached the relay. The relay keeps
 * the session's objects; the endpoint comes back, sends its TAKEN again
 * and gets its untaken objects again; a second consumer, ready all along,
 * gets none of them. Each object is consumed once. */
static void
test_exactly_once_taken_lost (TlspyoTestFixture *fixture,
                              gconstpointer      data)
{
  TlspyoEndpoint *a, *b, *producer;
  Proxy *proxy;

  g_object_set (fixture->relay, "session-timeout", 30.0, NULL);
  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  a = endpoint_via_proxy (fixture, proxy, "work", 0.0);
  producer = hold_numbered (fixture, a, 4, "obj", 4);
  b = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (b, "work", 10);

  proxy_freeze_direction (proxy, TO_RELAY);
  pop_expect (a, "obj-0");
  pop_expect (a, "obj-1");
  proxy_cut_all (proxy);
  g_assert_true (tlspyo_test_wait_connected_state (a, FALSE));
  /* Suspended while the relay has not said it kept them. */
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (a), ==, 0);
  g_assert_true (tlspyo_test_wait_until (proxy_accepted_two, proxy));
  g_assert_true (tlspyo_test_wait_connected_state (a, TRUE));

  /* Its own again, in order; the TAKEN sent again made the relay forget
   * the two taken before the cut. */
  pop_expect (a, "obj-2");
  pop_expect (a, "obj-3");
  wait_group_stat (fixture->relay, "work", "in-flight", 0);
  tlspyo_test_expect_nothing (b, 300);
  tlspyo_test_expect_nothing (a, 0);

  /* And the flow goes on, to b (a used its credit). */
  produce_numbered (producer, "next", 1);
  tlspyo_test_expect_string (b, "next-0");
  tlspyo_test_expect_nothing (a, 100);

  tlspyo_endpoint_stop (a);
  proxy_free (proxy);
}

/* Objects the relay sent that never reached the endpoint (lost in
 * transit) go back to the queue when it resumes: none is lost, none comes
 * twice. */
static void
test_exactly_once_lost_in_transit (TlspyoTestFixture *fixture,
                                   gconstpointer      data)
{
  TlspyoEndpoint *a, *producer;
  Proxy *proxy;

  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  a = endpoint_via_proxy (fixture, proxy, "work", 0.0);
  producer = hold_numbered (fixture, a, 5, "obj", 2);

  proxy_freeze_direction (proxy, TO_ENDPOINT);
  produce_numbered (producer, "lost", 3);
  wait_group_stat (fixture->relay, "work", "in-flight", 5);
  proxy_cut_all (proxy);

  /* Two arrived and were not taken (kept for it), three never arrived
   * (back to the queue, then to it again with the credit it still has). */
  expect_numbered (a, "obj", 2);
  expect_numbered (a, "lost", 3);
  tlspyo_test_expect_nothing (a, 300);
  wait_group_stat (fixture->relay, "work", "in-flight", 0);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "queued"), ==, 0);

  tlspyo_endpoint_stop (a);
  proxy_free (proxy);
}

/* A consumer that does not come back: after session-timeout, its
 * untaken objects go to another consumer. */
static void
test_exactly_once_session_timeout (TlspyoTestFixture *fixture,
                                   gconstpointer      data)
{
  TlspyoEndpoint *a, *b;
  Proxy *proxy;

  g_object_set (fixture->relay, "session-timeout", 0.3, NULL);
  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  a = endpoint_via_proxy (fixture, proxy, "work", 0.0);
  hold_numbered (fixture, a, 2, "obj", 2);
  b = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_give_credit (b, "work", 5);

  /* The proxy goes away with the connection: a cannot come back. */
  g_object_set (a, "stop-timeout", 0.0, NULL);
  proxy_free (proxy);
  /* Parked, not given back at once. */
  tlspyo_test_expect_nothing (b, 100);
  expect_numbered (b, "obj", 2);
  wait_group_stat (fixture->relay, "work", "in-flight", 0);
  tlspyo_endpoint_stop (a);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (a), ==, 0);
}

/* A relay that did not keep the session's objects (restarted, in memory):
 * the endpoint drops its suspended objects, gives their credit back and
 * asks for it again; nothing hangs, nothing comes twice. */
static void
test_exactly_once_not_kept (TlspyoTestFixture *fixture,
                            gconstpointer      data)
{
  TlspyoEndpoint *a, *producer;

  tlspyo_test_fixture_start (fixture);
  a = tlspyo_test_endpoint_start (fixture, "work");
  producer = hold_numbered (fixture, a, 3, "old", 2);
  tlspyo_endpoint_stop (producer);

  restart_relay (fixture, a);
  /* Not kept: dropped, not handed to the application. */
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (a), ==, 0);

  /* The three units of credit are announced again. */
  producer = tlspyo_test_endpoint_start (fixture, "prod");
  produce_numbered (producer, "new", 4);
  expect_numbered (a, "new", 3);
  tlspyo_test_expect_nothing (a, 300);
}

/* Broadcast numbers: an endpoint that reconnects does not get again the
 * latest broadcast it has; it gets a newer one; none goes backwards. */
static void
test_broadcast_seen (TlspyoTestFixture *fixture,
                     gconstpointer      data)
{
  TlspyoEndpoint *a, *sender, *late;
  Proxy *proxy;

  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  a = endpoint_via_proxy (fixture, proxy, "news", 0.0);
  sender = tlspyo_test_endpoint_start (fixture, "senders");
  g_assert_true (tlspyo_endpoint_broadcast (sender, g_variant_new_string ("b1"), "news", NULL));
  tlspyo_test_expect_string (a, "b1");

  /* Reconnects: b1 is the group's latest, and it has it. */
  proxy_cut_all (proxy);
  g_assert_true (tlspyo_test_wait_until (proxy_accepted_two, proxy));
  g_assert_true (tlspyo_test_wait_connected_state (a, TRUE));
  tlspyo_test_expect_nothing (a, 300);

  /* A newer one while it is away: it gets that one on coming back. */
  proxy_freeze_all (proxy);
  g_assert_true (tlspyo_endpoint_broadcast (sender, g_variant_new_string ("b2"), "news", NULL));
  g_assert_true (tlspyo_endpoint_flush (sender, TLSPYO_TEST_TIMEOUT_MS, NULL));
  proxy_cut_all (proxy);
  tlspyo_test_expect_string (a, "b2");
  tlspyo_test_expect_nothing (a, 300);

  /* A newcomer gets the latest once. */
  late = tlspyo_test_endpoint_start (fixture, "news");
  tlspyo_test_expect_string (late, "b2");
  g_assert_true (tlspyo_endpoint_broadcast (sender, g_variant_new_string ("b3"), "news", NULL));
  tlspyo_test_expect_string (a, "b3");
  tlspyo_test_expect_string (late, "b3");
  tlspyo_test_expect_nothing (late, 100);

  tlspyo_endpoint_stop (a);
  proxy_free (proxy);
}

/* Observability (issue 5, item 7). */

typedef struct {
  guint   n_emissions;
  guint64 n_objects;
  char   *last_group;
  char   *last_reason;
} Drops;

static void
on_object_dropped (TlspyoRelay *relay,
                   const char  *group,
                   const char  *reason,
                   guint64      count,
                   Drops       *drops)
{
  drops->n_emissions++;
  drops->n_objects += count;
  g_free (drops->last_group);
  drops->last_group = g_strdup (group);
  g_free (drops->last_reason);
  drops->last_reason = g_strdup (reason);
}

static gboolean
dropped_at_least (gpointer data)
{
  Drops *drops = ((gpointer *) data)[0];
  guint64 n = GPOINTER_TO_UINT (((gpointer *) data)[1]);

  return drops->n_objects >= n;
}

static void
test_stats_dropped (TlspyoTestFixture *fixture,
                    gconstpointer      data)
{
  TlspyoEndpoint *producer;
  Drops drops = { 0 };
  gpointer wait[2] = { &drops, GUINT_TO_POINTER (2) };

  tlspyo_relay_accept_group (fixture->relay, "work", -1, 1);
  tlspyo_relay_accept_group (fixture->relay, "prod", -1, -1);
  g_signal_connect (fixture->relay, "object-dropped", G_CALLBACK (on_object_dropped), &drops);
  tlspyo_test_fixture_start (fixture);

  producer = tlspyo_test_endpoint_start (fixture, "prod");
  produce_numbered (producer, "obj", 3);
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  g_assert_true (tlspyo_test_wait_until (dropped_at_least, wait));
  g_assert_cmpuint (drops.n_objects, ==, 2);
  g_assert_cmpstr (drops.last_group, ==, "work");
  g_assert_nonnull (strstr (drops.last_reason, "max_consumables"));
  g_assert_cmpuint (group_stat (fixture->relay, "work", "dropped"), ==, 2);
  g_assert_cmpuint (group_stat (fixture->relay, "work", "queued"), ==, 1);

  /* A group the relay does not accept. */
  g_assert_true (tlspyo_endpoint_broadcast (producer, g_variant_new_string ("x"), "nope", NULL));
  wait[1] = GUINT_TO_POINTER (3);
  g_assert_true (tlspyo_test_wait_until (dropped_at_least, wait));
  g_assert_cmpstr (drops.last_group, ==, "nope");
  g_assert_nonnull (strstr (drops.last_reason, "not accepted"));
  g_assert_cmpuint (group_stat (fixture->relay, "nope", "dropped"), ==, 1);
  g_assert_cmpuint (total_stat (fixture->relay, "dropped"), ==, 3);

  g_signal_handlers_disconnect_by_data (fixture->relay, &drops);
  g_free (drops.last_group);
  g_free (drops.last_reason);
}

static void
test_stats_keys (TlspyoTestFixture *fixture,
                 gconstpointer      data)
{
  g_autoptr(GVariant) before = NULL;
  g_autoptr(GVariant) stats = NULL;
  g_autoptr(GVariant) conns = NULL;
  TlspyoEndpoint *a, *b;
  guint32 n;
  guint64 total_in = 0, sum_in = 0;

  /* Not started: the same keys, empty. */
  before = tlspyo_relay_get_stats (fixture->relay);
  g_assert_true (g_variant_is_floating (before));
  g_variant_ref_sink (before);
  g_assert_true (g_variant_is_of_type (before, G_VARIANT_TYPE_VARDICT));
  g_assert_true (g_variant_lookup (before, "n-connections", "u", &n));
  g_assert_cmpuint (n, ==, 0);
  g_assert_cmpuint (total_stat (fixture->relay, "bytes-in"), ==, 0);

  tlspyo_test_fixture_start (fixture);
  a = tlspyo_test_endpoint_start (fixture, "g");
  b = tlspyo_test_endpoint_start (fixture, "g,h");
  g_assert_true (tlspyo_endpoint_broadcast (a, g_variant_new_string ("hello"), "g", NULL));
  tlspyo_test_expect_string (a, "hello");
  tlspyo_test_expect_string (b, "hello");
  tlspyo_test_give_credit (b, "h", 4);

  stats = g_variant_ref_sink (tlspyo_relay_get_stats (fixture->relay));
  g_assert_true (g_variant_lookup (stats, "n-connections", "u", &n));
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (group_stat (fixture->relay, "g", "credit"), ==, 0);
  g_assert_cmpuint (group_stat (fixture->relay, "h", "credit"), ==, 4);
  {
    g_autoptr(GVariant) groups = g_variant_lookup_value (stats, "groups", G_VARIANT_TYPE ("a{sa{sv}}"));
    g_autoptr(GVariant) g = g_variant_lookup_value (groups, "g", G_VARIANT_TYPE_VARDICT);
    guint32 members;
    gboolean latest;

    g_assert_nonnull (g);
    g_assert_true (g_variant_lookup (g, "members", "u", &members));
    g_assert_cmpuint (members, ==, 2);
    g_assert_true (g_variant_lookup (g, "has-latest", "b", &latest));
    g_assert_true (latest);
  }

  conns = g_variant_lookup_value (stats, "connections", G_VARIANT_TYPE ("aa{sv}"));
  g_assert_nonnull (conns);
  g_assert_cmpuint (g_variant_n_children (conns), ==, 2);
  for (gsize i = 0; i < g_variant_n_children (conns); i++)
    {
      g_autoptr(GVariant) c = g_variant_get_child_value (conns, i);
      const char *address;
      gboolean joined;
      guint64 in, out, queued;

      g_assert_true (g_variant_lookup (c, "address", "&s", &address));
      g_assert_true (g_str_has_prefix (address, "127.0.0.1"));
      g_assert_true (g_variant_lookup (c, "joined", "b", &joined));
      g_assert_true (joined);
      g_assert_true (g_variant_lookup (c, "bytes-in", "t", &in));
      g_assert_true (g_variant_lookup (c, "bytes-out", "t", &out));
      g_assert_true (g_variant_lookup (c, "queued-bytes", "t", &queued));
      g_assert_cmpuint (in, >, 0);
      g_assert_cmpuint (out, >, 0);
      sum_in += in;
    }
  g_assert_true (g_variant_lookup (stats, "bytes-in", "t", &total_in));
  g_assert_cmpuint (total_in, ==, sum_in);
}

/* Bounded memory (issue 5, item 6): an endpoint that stops reading gets
 * broadcasts coalesced to the latest per group; what the relay holds for
 * it stays about max-output-bytes, and every dropped broadcast is counted
 * and announced. */

static guint64
max_connection_stat (TlspyoRelay *relay,
                     const char  *key)
{
  g_autoptr(GVariant) stats = g_variant_ref_sink (tlspyo_relay_get_stats (relay));
  g_autoptr(GVariant) conns = g_variant_lookup_value (stats, "connections",
                                                      G_VARIANT_TYPE ("aa{sv}"));
  guint64 max = 0;

  for (gsize i = 0; i < g_variant_n_children (conns); i++)
    {
      g_autoptr(GVariant) c = g_variant_get_child_value (conns, i);
      guint64 value;

      g_assert_true (g_variant_lookup (c, key, "t", &value));
      max = MAX (max, value);
    }
  return max;
}

typedef struct {
  TlspyoEndpoint *ep;
  guint           last;       /* the index the test waits for */
  gint64          previous;   /* the last index seen, -1 before */
  guint           n_received;
} NewsReader;

static gboolean
news_read (gpointer data)
{
  NewsReader *r = data;
  g_autoptr(GPtrArray) got = tlspyo_endpoint_pop (r->ep, 1024, 0, NULL);

  for (guint i = 0; i < got->len; i++)
    {
      guint32 index;

      g_variant_get (got->pdata[i], "(u&s)", &index, NULL);
      /* Coalescing skips broadcasts, never reorders them. */
      g_assert_cmpint ((gint64) index, >, r->previous);
      r->previous = index;
      r->n_received++;
    }
  return r->previous == (gint64) r->last;
}

static void
test_output_bounded (TlspyoTestFixture *fixture,
                     gconstpointer      data)
{
  const guint64 limit = 256 * 1024;
  const guint n = 2000;
  g_autofree char *padding = g_strnfill (16 * 1024, 'x');
  TlspyoEndpoint *consumer, *producer;
  NewsReader reader = { NULL, n - 1, -1, 0 };
  Drops drops = { 0 };
  gpointer wait[2] = { &drops, NULL };
  guint64 max_queued = 0, coalesced, held;
  Proxy *proxy;

  /* Without keepalive: under valgrind the sending loop can outlast two
   * intervals, and the relay would then rightly drop the frozen consumer
   * instead of coalescing for it. */
  g_object_set (fixture->relay, "max-output-bytes", limit, "keepalive-interval", 0.0, NULL);
  g_signal_connect (fixture->relay, "object-dropped", G_CALLBACK (on_object_dropped), &drops);
  tlspyo_test_fixture_start (fixture);
  proxy = proxy_new (fixture->port);
  consumer = endpoint_via_proxy (fixture, proxy, "news", 0.0);
  producer = tlspyo_test_endpoint_start (fixture, "src");

  /* The consumer stops reading. */
  proxy_freeze_direction (proxy, TO_ENDPOINT);
  for (guint i = 0; i < n; i++)
    {
      g_assert_true (tlspyo_endpoint_broadcast (producer, g_variant_new ("(us)", i, padding),
                                                "news", NULL));
      if (i % 100 == 99)
        {
          g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
          max_queued = MAX (max_queued, max_connection_stat (fixture->relay, "queued-bytes"));
        }
    }
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, NULL));
  max_queued = MAX (max_queued, max_connection_stat (fixture->relay, "queued-bytes"));
  coalesced = max_connection_stat (fixture->relay, "coalesced");
  held = max_connection_stat (fixture->relay, "held-bytes");
  g_test_message ("queued at most %" G_GUINT64_FORMAT " bytes for the stalled endpoint, "
                  "%" G_GUINT64_FORMAT " broadcasts coalesced", max_queued, coalesced);

  /* The bound was reached (the system's socket buffers hold far less than
   * the 32 MB sent), and held: one object past the limit at most, plus
   * small frames; one broadcast held back. */
  g_assert_cmpuint (coalesced, >, 0);
  g_assert_cmpuint (max_queued, <=, limit + 16 * 1024 + 4096);
  g_assert_cmpuint (held, >, 16 * 1024);
  g_assert_cmpuint (held, <, 2 * 16 * 1024);

  /* Reading again, it gets the latest at last, in order, with gaps. */
  proxy_thaw_direction (proxy, TO_ENDPOINT);
  reader.ep = consumer;
  g_assert_true (tlspyo_test_wait_until (news_read, &reader));
  g_assert_cmpuint (reader.n_received, <, n);
  g_assert_cmpuint (reader.n_received + coalesced, ==, n);

  /* Every coalesced broadcast was counted and announced. */
  wait[1] = GUINT_TO_POINTER ((guint) coalesced);
  g_assert_true (tlspyo_test_wait_until (dropped_at_least, wait));
  g_assert_cmpuint (drops.n_objects, ==, coalesced);
  g_assert_cmpstr (drops.last_group, ==, "news");
  g_assert_nonnull (strstr (drops.last_reason, "max-output-bytes"));
  g_assert_cmpuint (group_stat (fixture->relay, "news", "dropped"), ==, coalesced);

  g_signal_handlers_disconnect_by_data (fixture->relay, &drops);
  g_free (drops.last_group);
  g_free (drops.last_reason);
  g_object_set (consumer, "stop-timeout", 0.0, NULL);
  tlspyo_endpoint_stop (consumer);
  proxy_free (proxy);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  TLSPYO_TEST_ADD ("/reliability/keepalive/idle", test_keepalive_idle);
  TLSPYO_TEST_ADD ("/reliability/keepalive/frozen", test_keepalive_frozen);
  TLSPYO_TEST_ADD ("/reliability/keepalive/disabled", test_keepalive_disabled);
  TLSPYO_TEST_ADD ("/reliability/credit/survives-restart", test_credit_survives_restart);
  TLSPYO_TEST_ADD ("/reliability/credit/all-not-remembered", test_credit_all_not_remembered);
  TLSPYO_TEST_ADD ("/reliability/session/resend-lost", test_session_resend_lost);
  TLSPYO_TEST_ADD ("/reliability/session/no-duplicates", test_session_no_duplicates);
  TLSPYO_TEST_ADD ("/reliability/session/max-buffered-bytes", test_session_max_buffered);
  TLSPYO_TEST_ADD ("/reliability/taken/requeue-on-cut", test_taken_requeue_on_cut);
  TLSPYO_TEST_ADD ("/reliability/taken/stop-gives-back", test_taken_stop_gives_back);
  TLSPYO_TEST_ADD ("/reliability/taken/by-handler", test_taken_by_handler);
  TLSPYO_TEST_ADD ("/reliability/exactly-once/taken-lost", test_exactly_once_taken_lost);
  TLSPYO_TEST_ADD ("/reliability/exactly-once/lost-in-transit", test_exactly_once_lost_in_transit);
  TLSPYO_TEST_ADD ("/reliability/exactly-once/session-timeout", test_exactly_once_session_timeout);
  TLSPYO_TEST_ADD ("/reliability/exactly-once/not-kept", test_exactly_once_not_kept);
  TLSPYO_TEST_ADD ("/reliability/broadcast/seen", test_broadcast_seen);
  TLSPYO_TEST_ADD ("/reliability/stats/dropped", test_stats_dropped);
  TLSPYO_TEST_ADD ("/reliability/stats/keys", test_stats_keys);
  TLSPYO_TEST_ADD ("/reliability/output/bounded", test_output_bounded);
  /* Raw frames: plain TCP only. */
  g_test_add ("/reliability/session/takeover/tcp", TlspyoTestFixture,
              GINT_TO_POINTER (TLSPYO_SECURITY_NONE), tlspyo_test_fixture_setup_param,
              test_session_takeover, tlspyo_test_fixture_teardown_param);

  return g_test_run ();
}
