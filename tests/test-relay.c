/* SPDX-License-Identifier: MIT */
/* The relay end to end: max-object-size on both sides, a 64 MiB broadcast
 * to several endpoints, stop() and start() again, the connection count, and
 * identical objects for every recipient. Then TLS: certificate pinning,
 * server identity, TLS against plain TCP both ways (failing at once, not at
 * a timeout), the certificate properties and relative credential folders. */
#include <string.h>

#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"

#define MiB (1024 * 1024)
#define REFUSAL_WARNINGS "*refused this endpoint*"
/* Longer than every bounded wait: a failure that only the relay's timeout
 * would reveal shows up as TIMED_OUT in the endpoint instead. */
#define LONG_HANDSHAKE_TIMEOUT_S 60

/* An "ay" object whose serialized body (data, NUL, "ay") is @body_size. */
static GVariant *
object_of_body_size (gsize  body_size,
                     guint8 fill)
{
  gsize n = body_size - 3;
  guint8 *data = g_malloc (n);

  memset (data, fill, n);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, n, TRUE, g_free, data);
}

/* max-object-size */

static void
test_max_object_size_endpoint (TlspyoTestFixture *f,
                               gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) got = NULL;

  tlspyo_test_fixture_start (f);
  receiver = tlspyo_test_endpoint_start (f, "g");
  sender = tlspyo_test_endpoint_new (f, "s");
  g_object_set (sender, "max-object-size", (guint64) MiB, NULL);
  g_assert_true (tlspyo_endpoint_start (sender, &error));

  /* One byte over the limit: refused at once, nothing queued or sent. */
  g_assert_false (tlspyo_endpoint_broadcast (sender, object_of_body_size (MiB + 1, 'x'), "g",
                                             &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "max-object-size"));
  g_clear_error (&error);
  g_assert_false (tlspyo_endpoint_produce (sender, object_of_body_size (2 * MiB, 'x'), "g",
                                           &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Exactly the limit: goes through. */
  g_assert_true (tlspyo_endpoint_broadcast (sender, object_of_body_size (MiB, 'y'), "g", &error));
  g_assert_no_error (error);
  tlspyo_test_flush (sender);

  got = tlspyo_endpoint_pop (receiver, 10, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 1);
  g_assert_cmpuint (g_variant_get_size (got->pdata[0]), ==, MiB - 3);
  g_assert_cmpint (((const guint8 *) g_variant_get_data (got->pdata[0]))[0], ==, 'y');
  tlspyo_test_expect_nothing (receiver, 100);

}

typedef struct {
  GQueue refusals;     /* of char *, "code:reason" */
  guint  n_connected;
} RelayEvents;

static void
refused_cb (TlspyoRelay *relay,
            const char  *address,
            TlspyoError  code,
            const char  *reason,
            RelayEvents *ev)
{
  g_queue_push_tail (&ev->refusals, g_strdup_printf ("%d:%s", code, reason));
}

static void
joined_cb (TlspyoRelay  *relay,
           const char   *address,
           const char  **groups,
           RelayEvents  *ev)
{
  ev->n_connected++;
}

/* An endpoint that allows more than the relay does: the relay tells its
 * max-object-size when the endpoint joins (RESUMED), and the endpoint
 * refuses the object itself, loudly (a warning and action-refused), and
 * goes on. Sent, it would make the relay drop the connection, and again
 * each time the endpoint sent it after reconnecting. */
static void
test_max_object_size_relay (TlspyoTestFixture *f,
                            gconstpointer      data)
{
  RelayEvents ev = { G_QUEUE_INIT, 0 };
  TlspyoTestRefusals r = { 0 };
  TlspyoEndpoint *sender, *receiver;
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate ("*was not sent to the relay*");
  g_object_set (f->relay, "max-object-size", (guint64) MiB, NULL);
  g_signal_connect (f->relay, "endpoint-refused", G_CALLBACK (refused_cb), &ev);
  g_signal_connect (f->relay, "endpoint-connected", G_CALLBACK (joined_cb), &ev);
  tlspyo_test_fixture_start (f);
  receiver = tlspyo_test_endpoint_start (f, "g");
  sender = tlspyo_test_endpoint_start (f, "s");
  tlspyo_test_refusals_watch_endpoint (&r, sender);

  g_assert_true (tlspyo_endpoint_broadcast (sender, object_of_body_size (MiB + 1, 'x'), "g",
                                            &error));
  g_assert_no_error (error);
  tlspyo_test_broadcast_string (sender, "after", "g");
  g_assert_true (tlspyo_test_wait_until (tlspyo_test_refusals_seen, &r));
  g_assert_cmpint (r.code, ==, TLSPYO_ERROR_LIMIT);
  g_assert_cmpstr (r.group, ==, "g");
  g_assert_nonnull (strstr (r.reason, "max-object-size"));
  g_assert_cmpuint (tlspyo_test_log_count ("*was not sent to the relay*"), ==, 1);

  /* Only the object that fits arrives, on the same connections. */
  tlspyo_test_expect_string (receiver, "after");
  tlspyo_test_expect_nothing (receiver, 50);
  g_assert_true (g_queue_is_empty (&ev.refusals));
  g_assert_cmpuint (ev.n_connected, ==, 2);

  g_signal_handlers_disconnect_by_data (sender, &r);
  g_signal_handlers_disconnect_by_data (f->relay, &ev);
  g_queue_clear_full (&ev.refusals, g_free);
  tlspyo_test_refusals_clear (&r);
}

/* A 64 MiB broadcast to 4 endpoints (the sender is one of them): every copy
 * arrives intact. This is the path where bodies are read straight into
 * place and one buffer at the relay is shared by every recipient. */
static void
test_large_object (TlspyoTestFixture *f,
                   gconstpointer      data)
{
  const gsize size = 64 * MiB;
  g_autoptr(GRand) rand = g_rand_new_with_seed (64);
  g_autoptr(GBytes) payload = NULL;
  TlspyoEndpoint *eps[4];
  guint32 *words;

  tlspyo_test_fixture_start (f);
  for (guint i = 0; i < G_N_ELEMENTS (eps); i++)
    eps[i] = tlspyo_test_endpoint_start (f, "big");

  words = g_malloc (size);
  for (gsize i = 0; i < size / 4; i++)
    words[i] = g_rand_int (rand);
  payload = g_bytes_new_take (words, size);

  {
    g_autoptr(GError) error = NULL;

    g_assert_true (tlspyo_endpoint_broadcast (eps[0],
                                              g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING,
                                                                        payload, TRUE),
                                              "big", &error));
    g_assert_no_error (error);
  }

  for (guint i = 0; i < G_N_ELEMENTS (eps); i++)
    {
      g_autoptr(GError) error = NULL;
      /* 320 MiB cross the loopback, encrypted twice with TLS: under
       * sanitizers on a loaded machine that takes longer than the usual
       * bound, so this one wait gets more (still bounded). */
      g_autoptr(GPtrArray) got = tlspyo_endpoint_pop (eps[i], 2, 6 * TLSPYO_TEST_TIMEOUT_MS,
                                                      &error);
      gsize len;
      const guint8 *received;

      g_assert_no_error (error);
      g_assert_cmpuint (got->len, ==, 1);
      g_assert_true (g_variant_is_of_type (got->pdata[0], G_VARIANT_TYPE_BYTESTRING));
      received = g_variant_get_fixed_array (got->pdata[0], &len, 1);
      g_assert_cmpuint (len, ==, size);
      /* Not g_assert_cmpmem: it would print 64 MiB on failure. */
      g_assert_true (memcmp (received, g_bytes_get_data (payload, NULL), size) == 0);
    }

}

/* Every recipient of a broadcast gets an equal object, whatever its type. */
static void
test_equal_objects (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  TlspyoEndpoint *sender;
  TlspyoEndpoint *receivers[8];
  g_autoptr(GVariant) object = NULL;
  g_autoptr(GError) error = NULL;
  GVariantBuilder dict;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "senders");
  for (guint i = 0; i < G_N_ELEMENTS (receivers); i++)
    receivers[i] = tlspyo_test_endpoint_start (f, i % 2 ? "odd,all" : "all");

  g_variant_builder_init (&dict, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&dict, "{sv}", "name", g_variant_new_string ("ünïcode ✓"));
  {
    static const double values[] = { 1.5, -2.0, 1e300 };
    GVariantBuilder pairs;

    g_variant_builder_add (&dict, "{sv}", "values",
                           g_variant_new_fixed_array (G_VARIANT_TYPE_DOUBLE, values,
                                                      G_N_ELEMENTS (values), sizeof (double)));
    g_variant_builder_init (&pairs, G_VARIANT_TYPE ("a(ts)"));
    g_variant_builder_add (&pairs, "(ts)", G_GUINT64_CONSTANT (1) << 40, "first");
    g_variant_builder_add (&pairs, "(ts)", (guint64) 0, "");
    g_variant_builder_add (&dict, "{sv}", "nested",
                           g_variant_new ("(ya(ts)mi)", 7, &pairs, TRUE, -42));
  }
  g_variant_builder_add (&dict, "{sv}", "maybe", g_variant_new_maybe (G_VARIANT_TYPE_INT64, NULL));
  object = g_variant_ref_sink (g_variant_builder_end (&dict));

  g_assert_true (tlspyo_endpoint_broadcast (sender, object, "all", &error));
  g_assert_true (tlspyo_endpoint_broadcast (sender, g_variant_new_string ("end"), "all", &error));
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (receivers); i++)
    {
      g_autoptr(GPtrArray) got = tlspyo_test_pop_n (receivers[i], 2);

      g_assert_true (g_variant_equal (got->pdata[0], object));
      g_assert_cmpstr (g_variant_get_string (got->pdata[1], NULL), ==, "end");
    }
}

/* stop() and start() again */

static gboolean
all_disconnected (gpointer data)
{
  GPtrArray *eps = data;

  for (guint i = 0; i < eps->len; i++)
    if (tlspyo_endpoint_get_connected (eps->pdata[i]))
      return FALSE;
  return TRUE;
}

static gboolean
all_connected (gpointer data)
{
  GPtrArray *eps = data;

  for (guint i = 0; i < eps->len; i++)
    if (!tlspyo_endpoint_get_connected (eps->pdata[i]))
      return FALSE;
  return TRUE;
}

static void
assert_port_free (guint port)
{
  g_autoptr(GSocketListener) listener = g_socket_listener_new ();
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, port);
  g_autoptr(GError) error = NULL;

  g_socket_listener_add_address (listener, address, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                 NULL, NULL, &error);
  g_assert_no_error (error);
  g_socket_listener_close (listener);
}

static void
test_stop_start (TlspyoTestFixture *f,
                 gconstpointer      data)
{
  g_autoptr(GPtrArray) eps = g_ptr_array_new ();
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) pending = NULL;
  g_autoptr(GError) error = NULL;
  char byte;

  tlspyo_test_fixture_start (f);
  for (guint i = 0; i < 3; i++)
    g_ptr_array_add (eps, tlspyo_test_endpoint_start (f, "g"));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 3);

  /* A connection still in its handshake is closed too. */
  g_socket_client_set_enable_proxy (client, FALSE);
  pending = g_socket_client_connect_to_host (client, "127.0.0.1", f->port, NULL, &error);
  g_assert_no_error (error);
  g_socket_set_timeout (g_socket_connection_get_socket (pending), TLSPYO_TEST_TIMEOUT_MS / 1000);

  tlspyo_relay_stop (f->relay);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);
  g_assert_true (tlspyo_test_wait_until (all_disconnected, eps));
  /* EOF or reset, not a timeout. */
  g_assert_cmpint (g_socket_receive (g_socket_connection_get_socket (pending), &byte, 1, NULL,
                                     &error), <=, 0);
  g_assert_false (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
  g_clear_error (&error);

  /* The port is free: something else can listen on it. */
  assert_port_free (f->port);

  /* Stopping again does nothing; starting again listens on the same port,
   * and the endpoints come back by themselves. */
  tlspyo_relay_stop (f->relay);
  tlspyo_test_fixture_restart (f);
  g_assert_true (tlspyo_test_wait_until (all_connected, eps));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 3);
  tlspyo_test_broadcast_string (eps->pdata[0], "after restart", "g");
  for (guint i = 0; i < eps->len; i++)
    tlspyo_test_expect_string (eps->pdata[i], "after restart");

  /* Stop and start once more, with a relay that has been stopped twice. */
  tlspyo_relay_stop (f->relay);
  g_assert_true (tlspyo_test_wait_until (all_disconnected, eps));
  tlspyo_test_fixture_restart (f);
  g_assert_true (tlspyo_test_wait_until (all_connected, eps));

}

/* get_n_connections counts endpoints that joined, nothing else. */

static void
test_n_connections (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  TlspyoEndpoint *a, *b, *c, *refused;
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) raw = NULL;
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);
  tlspyo_test_fixture_start (f);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);

  a = tlspyo_test_endpoint_start (f, "g");
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 1);
  b = tlspyo_test_endpoint_start (f, "g,h");
  c = tlspyo_test_endpoint_start (f, "h");
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 3);

  /* Neither a bare connection nor a refused endpoint counts. */
  g_socket_client_set_enable_proxy (client, FALSE);
  raw = g_socket_client_connect_to_host (client, "127.0.0.1", f->port, NULL, &error);
  g_assert_no_error (error);
  refused = tlspyo_test_endpoint_new (f, "g");
  g_object_set (refused, "password", "wrong", NULL);
  g_assert_true (tlspyo_endpoint_start (refused, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (refused, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_AUTHENTICATION);
  g_clear_error (&error);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 3);
  tlspyo_endpoint_stop (refused);

  tlspyo_endpoint_stop (b);
  tlspyo_test_wait_n_connections (f->relay, 2);
  tlspyo_endpoint_stop (a);
  tlspyo_endpoint_stop (c);
  tlspyo_test_wait_n_connections (f->relay, 0);

  /* Back again. */
  g_assert_true (tlspyo_endpoint_start (a, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (a, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 1);

}

/* TLS */

#define TLS_WARNINGS "*127.0.0.1:*"

/* Starts @ep and checks that it fails with @code, within our bound (the
 * relay's handshake timeout is longer), and that the relay refused it. */
static GError *
expect_endpoint_fails (TlspyoTestFixture *f,
                       TlspyoEndpoint    *ep,
                       TlspyoError        code)
{
  GError *error = NULL;

  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_no_error (error);
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_test_message ("endpoint failed with: %s", error->message);
  g_assert_error (error, TLSPYO_ERROR, (gint) code);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  tlspyo_endpoint_stop (ep);
  return error;
}

static void
start_tls_relay (TlspyoTestFixture *f)
{
  g_object_set (f->relay, "handshake-timeout", LONG_HANDSHAKE_TIMEOUT_S, NULL);
  tlspyo_test_fixture_start (f);
}

static void
test_tls_wrong_certificate (void)
{
  TlspyoTestFixture f = { 0 };
  g_autofree char *other = tlspyo_test_make_credentials ();
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (TLS_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  start_tls_relay (&f);

  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "credentials-dir", other, NULL);
  error = expect_endpoint_fails (&f, ep, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (error->message, "certificate"));

  /* The right one still works. */
  tlspyo_test_endpoint_start (&f, "g");

  tlspyo_test_remove_dir (other);
  tlspyo_test_fixture_teardown (&f);
}

static void
test_tls_wrong_server_identity (void)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (TLS_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  start_tls_relay (&f);

  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "server-identity", "not-the-relay.example", NULL);
  error = expect_endpoint_fails (&f, ep, TLSPYO_ERROR_CREDENTIALS);

  /* The name in the certificate ("default") works, set explicitly. */
  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "server-identity", "default", NULL);
  g_clear_error (&error);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);

  tlspyo_test_fixture_teardown (&f);
}

/* The relay's refusal, announced at once. */
typedef struct {
  TlspyoError code;
  char       *reason;
  gboolean    seen;
} FirstRefusal;

static void
first_refusal_cb (TlspyoRelay  *relay,
                  const char   *address,
                  TlspyoError   code,
                  const char   *reason,
                  FirstRefusal *r)
{
  if (r->seen)
    return;
  r->seen = TRUE;
  r->code = code;
  r->reason = g_strdup (reason);
}

static void
run_security_mismatch (TlspyoSecurity relay_security)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GError) error = NULL;
  g_autofree char *credentials = NULL;
  FirstRefusal r = { 0 };
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (TLS_WARNINGS);
  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, relay_security);
  g_signal_connect (f.relay, "endpoint-refused", G_CALLBACK (first_refusal_cb), &r);
  start_tls_relay (&f);

  ep = tlspyo_test_endpoint_new (&f, "g");
  if (relay_security == TLSPYO_SECURITY_NONE)
    {
      credentials = tlspyo_test_make_credentials ();
      g_object_set (ep, "security", TLSPYO_SECURITY_TLS, "credentials-dir", credentials, NULL);
    }
  else
    g_object_set (ep, "security", TLSPYO_SECURITY_NONE, NULL);

  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_test_message ("endpoint failed with: %s", error->message);
  /* Not TIMED_OUT: the mismatch is seen at once, and said. */
  g_assert_true (g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL) ||
                 g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED));
  g_assert_nonnull (strstr (error->message, "TLS"));
  tlspyo_endpoint_stop (ep);

  /* The relay says so too. */
  g_assert_true (tlspyo_test_wait_flag (&r.seen));
  g_assert_cmpint (r.code, ==, TLSPYO_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (r.reason, "TLS"));

  /* And it still serves endpoints of its own kind. */
  ep = tlspyo_test_endpoint_start (&f, "g");
  tlspyo_test_broadcast_string (ep, "still fine", "g");
  tlspyo_test_expect_string (ep, "still fine");

  g_signal_handlers_disconnect_by_data (f.relay, &r);
  g_free (r.reason);
  if (credentials != NULL)
    tlspyo_test_remove_dir (credentials);
  tlspyo_test_fixture_teardown (&f);
}

static void
test_tls_endpoint_tcp_relay (void)
{
  run_security_mismatch (TLSPYO_SECURITY_NONE);
}

static void
test_tcp_endpoint_tls_relay (void)
{
  run_security_mismatch (TLSPYO_SECURITY_TLS);
}

/* The relay's certificate property wins over its credentials folder. */
static void
test_tls_relay_certificate_property (void)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *empty = g_dir_make_tmp ("tlspyo-empty-XXXXXX", NULL);
  TlspyoEndpoint *ep;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  certificate = tlspyo_credentials_load_certificate (f.credentials_dir, TRUE, &error);
  g_assert_no_error (error);
  /* The folder is empty: only the property can make this work. */
  g_object_set (f.relay, "credentials-dir", empty, "certificate", certificate, NULL);
  start_tls_relay (&f);

  ep = tlspyo_test_endpoint_start (&f, "g");
  tlspyo_test_broadcast_string (ep, "pinned", "g");
  tlspyo_test_expect_string (ep, "pinned");

  g_rmdir (empty);
  tlspyo_test_fixture_teardown (&f);
}

static void
test_tls_certificate_without_key (void)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  path = g_build_filename (f.credentials_dir, "certificate.pem", NULL);
  certificate = g_tls_certificate_new_from_file (path, &error);
  g_assert_no_error (error);
  g_object_set (f.relay, "certificate", certificate, NULL);

  g_assert_false (tlspyo_relay_start (f.relay, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (error->message, "private key"));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f.relay), ==, 0);

  tlspyo_test_fixture_teardown (&f);
}

/* The endpoint's certificate property pins instead of its folder: a wrong
 * folder with the right property connects, the right folder with a wrong
 * property does not. */
static void
test_tls_endpoint_certificate_property (void)
{
  TlspyoTestFixture f = { 0 };
  g_autofree char *other = tlspyo_test_make_credentials ();
  g_autoptr(GTlsCertificate) right = NULL;
  g_autoptr(GTlsCertificate) wrong = NULL;
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (TLS_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  start_tls_relay (&f);
  right = tlspyo_credentials_load_certificate (f.credentials_dir, FALSE, &error);
  g_assert_no_error (error);
  wrong = tlspyo_credentials_load_certificate (other, FALSE, &error);
  g_assert_no_error (error);

  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "credentials-dir", other, "certificate", right, NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);

  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "certificate", wrong, NULL);
  g_clear_error (&error);
  error = expect_endpoint_fails (&f, ep, TLSPYO_ERROR_CREDENTIALS);

  tlspyo_test_remove_dir (other);
  tlspyo_test_fixture_teardown (&f);
}

/* Relative credential folders work on both sides. */
static void
test_tls_relative_credentials_dir (void)
{
  TlspyoTestFixture f = { 0 };
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *parent = NULL;
  g_autofree char *relative = NULL;
  TlspyoEndpoint *ep;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  parent = g_path_get_dirname (f.credentials_dir);
  relative = g_path_get_basename (f.credentials_dir);
  g_assert_cmpint (g_chdir (parent), ==, 0);

  g_object_set (f.relay, "credentials-dir", relative, NULL);
  start_tls_relay (&f);
  ep = tlspyo_test_endpoint_new (&f, "g");
  g_object_set (ep, "credentials-dir", relative, NULL);
  {
    g_autoptr(GError) error = NULL;

    g_assert_true (tlspyo_endpoint_start (ep, &error));
    g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
    g_assert_no_error (error);
  }
  tlspyo_test_broadcast_string (ep, "relative", "g");
  tlspyo_test_expect_string (ep, "relative");

  g_assert_cmpint (g_chdir (cwd), ==, 0);
  tlspyo_test_fixture_teardown (&f);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  TLSPYO_TEST_ADD ("/relay/max-object-size/endpoint", test_max_object_size_endpoint);
  TLSPYO_TEST_ADD ("/relay/max-object-size/relay", test_max_object_size_relay);
  TLSPYO_TEST_ADD ("/relay/large-object", test_large_object);
  TLSPYO_TEST_ADD ("/relay/equal-objects", test_equal_objects);
  TLSPYO_TEST_ADD ("/relay/stop-start", test_stop_start);
  TLSPYO_TEST_ADD ("/relay/n-connections", test_n_connections);
  g_test_add_func ("/tls/wrong-certificate", test_tls_wrong_certificate);
  g_test_add_func ("/tls/wrong-server-identity", test_tls_wrong_server_identity);
  g_test_add_func ("/tls/tls-endpoint-tcp-relay", test_tls_endpoint_tcp_relay);
  g_test_add_func ("/tls/tcp-endpoint-tls-relay", test_tcp_endpoint_tls_relay);
  g_test_add_func ("/tls/relay-certificate-property", test_tls_relay_certificate_property);
  g_test_add_func ("/tls/certificate-without-key", test_tls_certificate_without_key);
  g_test_add_func ("/tls/endpoint-certificate-property", test_tls_endpoint_certificate_property);
  g_test_add_func ("/tls/relative-credentials-dir", test_tls_relative_credentials_dir);
  return g_test_run ();
}
