/* SPDX-License-Identifier: MIT */
/* The relay's limits against hostile peers (docs/security.md): connections
 * in all and per source address, failed authentications per address
 * (delayed, then refused for a while), groups per endpoint, group names,
 * bytes queued per group, bytes in flight per consumer. Each one, when hit, is a clear error to the peer
 * that hit it (REFUSED, or DENIED for an action, with a reason), and the
 * other peers keep working. Connections "from other addresses" go through
 * tlspyo_relay_accept_stream() over a socket pair, which lets the test say
 * which address they come from. */
#include <string.h>
#include <sys/socket.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-relay-private.h"

#define REFUSAL_WARNINGS "*refused this endpoint*"
#define DENIAL_WARNINGS "*refused an action of this endpoint*"

#define GROUPS(...) ((const char * const[]) { __VA_ARGS__, NULL })

/* A raw client speaking the protocol by hand over a socket: a TCP
 * connection, or one end of a socket pair the relay serves as if it came
 * from a given address. Every read is bounded. */

typedef struct {
  TlspyoFrameType  type;
  GVariant        *meta;
} RawFrame;

typedef struct {
  GIOStream          *conn;
  GSocket            *socket;
  TlspyoFrameDecoder *decoder;
  GQueue              frames;
  gboolean            closed;
  guint8              endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8              relay_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8              key[TLSPYO_AUTH_KEY_SIZE];
} Raw;

static void
raw_frame_free (RawFrame *frame)
{
  g_variant_unref (frame->meta);
  g_free (frame);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RawFrame, raw_frame_free)

static Raw *
raw_new (GIOStream *conn,
         GSocket   *socket)
{
  Raw *raw = g_new0 (Raw, 1);

  raw->conn = conn;
  raw->socket = socket;
  g_socket_set_timeout (socket, TLSPYO_TEST_TIMEOUT_MS / 1000);
  raw->decoder = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 1024 * 1024,
                                           TLSPYO_FRAME_MASK_ALL);
  g_queue_init (&raw->frames);
  return raw;
}

static Raw *
raw_connect (guint port)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  GSocketConnection *conn;

  g_socket_client_set_enable_proxy (client, FALSE);
  g_socket_client_set_timeout (client, TLSPYO_TEST_TIMEOUT_MS / 1000);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  return raw_new (G_IO_STREAM (conn), g_socket_connection_get_socket (conn));
}

/* A connection the relay sees as coming from @address. */
static Raw *
raw_attach (TlspyoRelay *relay,
            const char  *address)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) ours = NULL;
  g_autoptr(GSocket) theirs = NULL;
  g_autoptr(GSocketConnection) relay_side = NULL;
  GSocketConnection *conn;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  ours = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  theirs = g_socket_new_from_fd (fds[1], &error);
  g_assert_no_error (error);
  relay_side = g_socket_connection_factory_create_connection (theirs);
  tlspyo_relay_accept_stream (relay, G_IO_STREAM (relay_side), address);
  conn = g_socket_connection_factory_create_connection (ours);
  return raw_new (G_IO_STREAM (conn), ours);
}

static void
raw_free (Raw *raw)
{
  g_io_stream_close (raw->conn, NULL, NULL);
  g_object_unref (raw->conn);
  tlspyo_frame_decoder_free (raw->decoder);
  g_queue_clear_full (&raw->frames, (GDestroyNotify) raw_frame_free);
  g_free (raw);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Raw, raw_free)

/* Bytes of the encoded frame equal to @patch_from (if given) are replaced
 * with @patch_to, of the same length: how the tests send what GVariant
 * would not build, such as a string that is not UTF-8. */
static const char *patch_from;
static const char *patch_to;

static void
raw_send_frame (Raw             *raw,
                TlspyoFrameType  type,
                GVariant        *meta)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  gsize done = 0;

  tlspyo_frame_append (out, type, meta, 0);
  if (patch_from != NULL)
    {
      gsize n = strlen (patch_from);

      g_assert_cmpuint (strlen (patch_to), ==, n);
      for (gsize i = 0; i + n <= out->len; i++)
        if (memcmp (out->data + i, patch_from, n) == 0)
          memcpy (out->data + i, patch_to, n);
    }
  while (done < out->len)
    {
      gssize n = g_socket_send (raw->socket, (const char *) out->data + done, out->len - done,
                                NULL, NULL);
      if (n <= 0)
        return;  /* the relay closed first: what it did is checked by reading */
      done += n;
    }
}

static gboolean
collect_cb (const TlspyoFrame *frame,
            gpointer           user_data)
{
  Raw *raw = user_data;
  RawFrame *copy = g_new0 (RawFrame, 1);

  copy->type = frame->type;
  copy->meta = g_variant_ref (frame->meta);
  g_queue_push_tail (&raw->frames, copy);
  return TRUE;
}

/* The next frame other than ACK, or NULL once the relay closed. */
static RawFrame *
raw_next (Raw *raw)
{
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      guint8 buffer[16 * 1024];
      RawFrame *frame;
      gssize n;

      while ((frame = g_queue_pop_head (&raw->frames)) != NULL)
        {
          if (frame->type != TLSPYO_FRAME_ACK)
            return frame;
          raw_frame_free (frame);
        }
      if (raw->closed)
        return NULL;
      n = g_socket_receive (raw->socket, (char *) buffer, sizeof buffer, NULL, &error);
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        g_error ("The relay neither answered nor closed within %d ms", TLSPYO_TEST_TIMEOUT_MS);
      if (n <= 0)
        {
          raw->closed = TRUE;
          continue;
        }
      g_clear_error (&error);
      if (!tlspyo_frame_decoder_feed (raw->decoder, buffer, n, collect_cb, raw, &error))
        g_error ("The relay sent a malformed frame: %s", error->message);
    }
}

static RawFrame *
raw_expect (Raw             *raw,
            TlspyoFrameType  type)
{
  RawFrame *frame = raw_next (raw);

  if (frame == NULL)
    g_error ("The relay closed where %s was expected", tlspyo_frame_type_to_string (type));
  if (frame->type != type)
    g_error ("The relay sent %s where %s was expected",
             tlspyo_frame_type_to_string (frame->type), tlspyo_frame_type_to_string (type));
  return frame;
}

static void
raw_expect_closed (Raw *raw)
{
  g_autoptr(RawFrame) frame = raw_next (raw);

  if (frame != NULL)
    g_error ("Expected the relay to close, it sent %s", tlspyo_frame_type_to_string (frame->type));
}

static void
raw_hello (Raw *raw)
{
  tlspyo_auth_random (raw->endpoint_nonce, sizeof raw->endpoint_nonce);
  raw_send_frame (raw, TLSPYO_FRAME_HELLO,
                  g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                 g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                            raw->endpoint_nonce,
                                                            TLSPYO_AUTH_NONCE_SIZE, 1)));
}

/* Reads the CHALLENGE, answers with a proof made from @password. */
static void
raw_auth (Raw                *raw,
          const char         *password,
          const char * const *groups)
{
  g_autoptr(RawFrame) challenge = raw_expect (raw, TLSPYO_FRAME_CHALLENGE);
  g_autoptr(GVariant) nonce = NULL;
  g_autoptr(GVariant) salt = NULL;
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *salt_data;
  gsize salt_len, nonce_len;
  guint32 rounds;

  g_variant_get (challenge->meta, "(@ay@ayu)", &nonce, &salt, &rounds);
  memcpy (raw->relay_nonce, g_variant_get_fixed_array (nonce, &nonce_len, 1),
          sizeof raw->relay_nonce);
  salt_data = g_variant_get_fixed_array (salt, &salt_len, 1);
  g_assert_true (tlspyo_auth_derive_key (password, salt_data, salt_len, rounds, raw->key, NULL));
  tlspyo_auth_proof (raw->key, TLSPYO_AUTH_ROLE_ENDPOINT, raw->endpoint_nonce, raw->relay_nonce,
                     proof);
  raw_send_frame (raw, TLSPYO_FRAME_AUTH,
                  g_variant_new ("(@ay^as)",
                                 g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                            sizeof proof, 1),
                                 groups));
}

static void
raw_join (Raw                *raw,
          const char * const *groups)
{
  g_autoptr(RawFrame) welcome = NULL;

  raw_hello (raw);
  raw_auth (raw, TLSPYO_TEST_PASSWORD, groups);
  welcome = raw_expect (raw, TLSPYO_FRAME_WELCOME);
}

/* The relay answers REFUSED with @code and a reason mentioning @text,
 * then closes. */
static void
raw_expect_refused (Raw         *raw,
                    TlspyoError  code,
                    const char  *text)
{
  g_autoptr(RawFrame) refused = raw_expect (raw, TLSPYO_FRAME_REFUSED);
  const char *reason;
  guint32 got;

  g_variant_get (refused->meta, "(u&s)", &got, &reason);
  g_test_message ("refused (%u): %s", got, reason);
  g_assert_cmpuint (got, ==, code);
  if (strstr (reason, text) == NULL)
    g_error ("Refusal “%s” does not mention “%s”", reason, text);
  raw_expect_closed (raw);
}

/* Helpers on endpoints */

/* The pair still exchanges objects. */
static void
check_pair_works (TlspyoEndpoint *sender,
                  TlspyoEndpoint *receiver,
                  const char     *text)
{
  tlspyo_test_broadcast_string (sender, text, "pair");
  tlspyo_test_expect_string (receiver, text);
}

static void
expect_endpoint_refused (TlspyoEndpoint *ep,
                         TlspyoError     code,
                         const char     *text)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, (gint) code);
  if (strstr (error->message, text) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, text);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
}

static void
set_uint (TlspyoTestFixture *f,
          const char        *property,
          guint              value)
{
  g_object_set (f->relay, property, value, NULL);
}

/* Defaults */

static void
test_defaults (void)
{
  g_autoptr(TlspyoRelay) relay = tlspyo_relay_new (0, "x");
  guint max_connections, per_address, failures, block, delay, groups;
  guint64 queued, in_flight;

  g_object_get (relay,
                "max-connections", &max_connections,
                "max-connections-per-address", &per_address,
                "max-auth-failures", &failures,
                "auth-block-time", &block,
                "auth-failure-delay", &delay,
                "max-groups-per-endpoint", &groups,
                "max-queued-bytes", &queued,
                "max-in-flight-bytes", &in_flight,
                NULL);
  /* The values docs/security.md promises. */
  g_assert_cmpuint (max_connections, ==, 1024);
  g_assert_cmpuint (per_address, ==, 64);
  g_assert_cmpuint (failures, ==, 10);
  g_assert_cmpuint (block, ==, 600);
  g_assert_cmpuint (delay, ==, 100);
  g_assert_cmpuint (groups, ==, 64);
  g_assert_cmpuint (queued, ==, G_GUINT64_CONSTANT (1) << 30);
  g_assert_cmpuint (in_flight, ==, G_GUINT64_CONSTANT (256) << 20);
}

/* Connections in all: over the limit, an endpoint is refused with LIMIT
 * (over TLS too: the refusal follows the TLS handshake), the connected
 * ones keep working, and once one leaves the refused one gets in. */
static void
test_max_connections (TlspyoTestFixture *f,
                      gconstpointer      data)
{
  TlspyoEndpoint *a, *b, *c;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  set_uint (f, "max-connections", 2);
  tlspyo_test_fixture_start (f);
  a = tlspyo_test_endpoint_start (f, "pair");
  b = tlspyo_test_endpoint_start (f, "pair");

  c = tlspyo_test_endpoint_new (f, "pair");
  expect_endpoint_refused (c, TLSPYO_ERROR_LIMIT, "max-connections");
  check_pair_works (a, b, "still served");

  /* A refused endpoint retries in the background. */
  tlspyo_endpoint_stop (a);
  g_assert_true (tlspyo_test_wait_connected_state (c, TRUE));
  check_pair_works (c, b, "the third one got in");
}

/* Per source address: the limit counts one address's connections; another
 * address is still served. */
static void
test_max_connections_per_address (void)
{
  TlspyoTestFixture f = { 0 };

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  set_uint (&f, "max-connections-per-address", 2);
  tlspyo_test_fixture_start (&f);

  {
    g_autoptr(Raw) first = raw_attach (f.relay, "198.51.100.7");
    g_autoptr(Raw) second = raw_attach (f.relay, "198.51.100.7");
    g_autoptr(Raw) third = raw_attach (f.relay, "198.51.100.7");
    g_autoptr(Raw) elsewhere = raw_attach (f.relay, "198.51.100.8");

    raw_join (first, GROUPS ("g"));
    raw_hello (third);
    raw_expect_refused (third, TLSPYO_ERROR_LIMIT, "max-connections-per-address");
    raw_join (elsewhere, GROUPS ("g"));
    /* The second, connected before the refusal, was never touched. */
    raw_join (second, GROUPS ("g"));
  }

  /* Over real sockets, from 127.0.0.1. */
  set_uint (&f, "max-connections-per-address", 1);
  tlspyo_relay_stop (f.relay);
  tlspyo_test_fixture_start (&f);
  {
    TlspyoEndpoint *a = tlspyo_test_endpoint_start (&f, "pair");
    TlspyoEndpoint *b = tlspyo_test_endpoint_new (&f, "pair");

    expect_endpoint_refused (b, TLSPYO_ERROR_LIMIT, "127.0.0.1");
    g_assert_true (tlspyo_endpoint_get_connected (a));
  }
  tlspyo_test_fixture_teardown (&f);
}

/* Failed authentications from one address: each answer comes later than
 * the one before (the delay doubles), the address is refused after
 * max-auth-failures, even with the right password, for auth-block-time;
 * endpoints already connected and other addresses are not affected; and
 * after the block time, the address is served again. */
static void
test_auth_failures (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *a, *b;
  gint64 previous = 0;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  g_object_set (f.relay,
                "max-auth-failures", 3,
                "auth-failure-delay", 100,
                "auth-block-time", 2,
                NULL);
  tlspyo_test_fixture_start (&f);
  a = tlspyo_test_endpoint_start (&f, "pair");
  b = tlspyo_test_endpoint_start (&f, "pair");

  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(Raw) raw = raw_connect (f.port);
      gint64 start, took;

      raw_hello (raw);
      raw_auth (raw, "not the password", GROUPS ("pair"));
      start = g_get_monotonic_time ();
      raw_expect_refused (raw, TLSPYO_ERROR_AUTHENTICATION, "password");
      took = g_get_monotonic_time () - start;
      g_test_message ("failure %u answered after %" G_GINT64_FORMAT " µs", i + 1, took);
      /* 100 ms, then 200 ms, then 400 ms: a lower bound only, less a
       * fifth, since a GLib timeout counts from the start of the main loop
       * iteration that armed it, a little before the AUTH was read. */
      g_assert_cmpint (took, >=, (100 << i) * 800);
      g_assert_cmpint (took, >, previous);
      previous = took;
    }

  /* Blocked: even the right password is refused, with LIMIT. */
  {
    g_autoptr(Raw) raw = raw_connect (f.port);

    raw_hello (raw);
    raw_expect_refused (raw, TLSPYO_ERROR_LIMIT, "failed authentications");
  }
  {
    TlspyoEndpoint *c = tlspyo_test_endpoint_new (&f, "pair");

    expect_endpoint_refused (c, TLSPYO_ERROR_LIMIT, "failed authentications");
    tlspyo_endpoint_stop (c);
  }

  /* Not the others. */
  check_pair_works (a, b, "connected before the block");
  {
    g_autoptr(Raw) other = raw_attach (f.relay, "203.0.113.9");

    raw_join (other, GROUPS ("pair"));
  }

  /* After auth-block-time (2 s), served again (bounded wait: the retries
   * of a real endpoint). */
  {
    TlspyoEndpoint *d = tlspyo_test_endpoint_new (&f, "pair");
    g_autoptr(GError) error = NULL;

    g_object_set (d, "reconnect-initial-delay", 0.2, "reconnect-max-delay", 0.2, NULL);
    g_assert_true (tlspyo_endpoint_start (d, &error));
    g_assert_true (tlspyo_test_wait_connected_state (d, TRUE));
    tlspyo_test_expect_string (d, "connected before the block");  /* the latest, on joining */
    check_pair_works (a, d, "after the block");
  }
  tlspyo_test_fixture_teardown (&f);
}

/* max-auth-failures 0 never blocks; auth-failure-delay 0 answers at once. */
static void
test_auth_failures_unlimited (void)
{
  TlspyoTestFixture f = { 0 };

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  g_object_set (f.relay, "max-auth-failures", 0, "auth-failure-delay", 0, NULL);
  tlspyo_test_fixture_start (&f);
  for (guint i = 0; i < 15; i++)
    {
      g_autoptr(Raw) raw = raw_connect (f.port);

      raw_hello (raw);
      raw_auth (raw, "not the password", GROUPS ("pair"));
      raw_expect_refused (raw, TLSPYO_ERROR_AUTHENTICATION, "password");
    }
  {
    g_autoptr(Raw) raw = raw_connect (f.port);

    raw_join (raw, GROUPS ("pair"));
  }
  tlspyo_test_fixture_teardown (&f);
}

/* Groups per endpoint. */
static void
test_max_groups (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  set_uint (&f, "max-groups-per-endpoint", 3);
  tlspyo_test_fixture_start (&f);

  ep = tlspyo_test_endpoint_new (&f, "a,b,c,d");
  expect_endpoint_refused (ep, TLSPYO_ERROR_LIMIT, "max-groups-per-endpoint");
  tlspyo_endpoint_stop (ep);
  ep = tlspyo_test_endpoint_start (&f, "a,b,c");
  g_assert_true (tlspyo_endpoint_get_connected (ep));
  tlspyo_test_fixture_teardown (&f);
}

/* Group names: valid UTF-8, 1 to 255 bytes, no control characters, checked
 * where they come in (AUTH here; OBJECT and NOTIFY in test-hostile). */
static void
test_group_names (void)
{
  TlspyoTestFixture f = { 0 };
  g_autofree char *long_name = g_strnfill (256, 'g');
  g_autofree char *longest = g_strnfill (255, 'g');
  const char *bad[] = { "", "tab\there", "bell\a", "del\x7f", "\xc2\x85next-line", long_name };

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  tlspyo_test_fixture_start (&f);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(Raw) raw = raw_connect (f.port);

      raw_hello (raw);
      raw_auth (raw, TLSPYO_TEST_PASSWORD, GROUPS ("fine", bad[i]));
      raw_expect_refused (raw, TLSPYO_ERROR_GROUP_REFUSED, "group name");
    }
  /* Not UTF-8: the metadata itself is not a valid GVariant, so it is
   * refused as a protocol error, before any group is looked at. */
  {
    g_autoptr(Raw) raw = raw_connect (f.port);

    raw_hello (raw);
    patch_from = "NOT-UTF8";
    patch_to = "\xff\xfeX-UTF8";
    raw_auth (raw, TLSPYO_TEST_PASSWORD, GROUPS ("fine", "NOT-UTF8"));
    patch_from = patch_to = NULL;
    raw_expect_closed (raw);
  }
  {
    g_autoptr(Raw) raw = raw_connect (f.port);

    raw_join (raw, GROUPS ("fine", longest, "日本語 ☃"));
  }
  tlspyo_test_fixture_teardown (&f);
}

/* Bytes queued per group: a produced object that does not fit is dropped,
 * its sender told (action-refused, LIMIT) and its connection kept; the
 * queue keeps what fit; once drained it takes objects again; other groups
 * are not affected. */

static void
produce_text (TlspyoEndpoint *ep,
              const char     *group,
              char            fill)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = g_strnfill (990, fill);

  g_assert_true (tlspyo_endpoint_produce (ep, g_variant_new_string (text), group, &error));
  g_assert_no_error (error);
}

static void
test_max_queued_bytes (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *producer, *consumer, *a, *b;
  TlspyoTestRefusals r = { 0 };
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) got = NULL;

  tlspyo_test_log_tolerate (DENIAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  /* Three objects of about 1000 bytes fit, not four. */
  g_object_set (f.relay, "max-queued-bytes", (guint64) 3100, NULL);
  tlspyo_test_fixture_start (&f);
  producer = tlspyo_test_endpoint_start (&f, "producers");
  consumer = tlspyo_test_endpoint_start (&f, "work");
  a = tlspyo_test_endpoint_start (&f, "pair");
  b = tlspyo_test_endpoint_start (&f, "pair");
  tlspyo_test_refusals_watch_endpoint (&r, producer);

  produce_text (producer, "work", 'a');
  produce_text (producer, "work", 'b');
  produce_text (producer, "work", 'c');
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_cmpuint (r.count, ==, 0);

  produce_text (producer, "work", 'd');
  /* Refused objects are acknowledged too: flush does not wait for them. */
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  g_assert_true (tlspyo_test_wait_until (tlspyo_test_refusals_seen, &r));
  g_assert_cmpuint (r.count, ==, 1);
  g_assert_cmpstr (r.group, ==, "work");
  g_assert_cmpint (r.code, ==, TLSPYO_ERROR_LIMIT);
  g_assert_nonnull (strstr (r.reason, "max-queued-bytes"));
  g_assert_true (tlspyo_endpoint_get_connected (producer));
  check_pair_works (a, b, "other groups go on");

  /* The consumer gets the three that fit, in order, and not the fourth. */
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", -1, &error));
  got = tlspyo_test_pop_n (consumer, 3);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpint (g_variant_get_string (got->pdata[i], NULL)[0], ==, 'a' + i);
  tlspyo_test_expect_nothing (consumer, 200);

  /* Drained: room again. */
  produce_text (producer, "work", 'e');
  g_assert_true (tlspyo_endpoint_flush (producer, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "work", 1, &error));
  g_ptr_array_unref (got);
  got = tlspyo_test_pop_n (consumer, 1);
  g_assert_cmpint (g_variant_get_string (got->pdata[0], NULL)[0], ==, 'e');
  g_assert_cmpuint (r.count, ==, 1);

  tlspyo_test_refusals_clear (&r);
  tlspyo_test_fixture_teardown (&f);
}

/* Bytes in flight per consumer and group */

/* What max-in-flight-bytes counts for one produced object: its serialized
 * size plus 64 (documented in TlspyoRelay:max-in-flight-bytes). */
#define IN_FLIGHT_OVERHEAD 64

/* Produced object @i of the in-flight test: all the same size, numbered. */
static GVariant *
numbered_object (guint i)
{
  g_autofree char *fill = g_strnfill (990, 'x');

  return g_variant_new_take_string (g_strdup_printf ("%03u%s", i, fill));
}

/* Checks that @objects, from index @at, are the objects numbered @first
 * to @first + @n - 1. */
static void
assert_numbered (GPtrArray *objects,
                 guint      at,
                 guint      first,
                 guint      n)
{
  g_assert_cmpuint (objects->len, >=, at + n);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *prefix = g_strdup_printf ("%03u", first + i);

      g_assert_true (g_str_has_prefix (g_variant_get_string (objects->pdata[at + i], NULL),
                                       prefix));
    }
}

/* The group "work" in one snapshot of the relay's stats, so that in-flight
 * and queued are read together: an object moving from the queue to a
 * consumer between two snapshots cannot fool a wait. */
typedef struct {
  guint64 in_flight;
  guint64 queued;
  guint64 credit;
} WorkStats;

static WorkStats
work_stats (TlspyoRelay *relay)
{
  g_autoptr(GVariant) stats = g_variant_ref_sink (tlspyo_relay_get_stats (relay));
  g_autoptr(GVariant) groups = NULL;
  g_autoptr(GVariant) work = NULL;
  WorkStats w = { 0 };

  g_assert_true (g_variant_lookup (stats, "groups", "@a{sa{sv}}", &groups));
  if (g_variant_lookup (groups, "work", "@a{sv}", &work))
    {
      g_assert_true (g_variant_lookup (work, "in-flight", "t", &w.in_flight));
      g_assert_true (g_variant_lookup (work, "queued", "t", &w.queued));
      g_assert_true (g_variant_lookup (work, "credit", "t", &w.credit));
    }
  return w;
}

typedef struct {
  TlspyoRelay *relay;
  guint64      in_flight;
  guint64      queued;
} FlightWait;

static gboolean
flight_reached (gpointer data)
{
  FlightWait *want = data;
  WorkStats w = work_stats (want->relay);

  return w.in_flight == want->in_flight && w.queued == want->queued;
}

/* Waits (bounded) until "work" has @in_flight objects in flight and
 * @queued in its queue. */
static void
wait_flight (TlspyoRelay *relay,
             guint64      in_flight,
             guint64      queued)
{
  FlightWait want = { relay, in_flight, queued };
  WorkStats w;

  if (tlspyo_test_wait_until (flight_reached, &want))
    return;
  w = work_stats (relay);
  g_error ("Group 'work': %" G_GUINT64_FORMAT " in flight and %" G_GUINT64_FORMAT
           " queued, expected %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT,
           w.in_flight, w.queued, in_flight, queued);
}

/* A consumer that announces a large credit and whose application takes
 * nothing holds at most max-in-flight-bytes of the group's objects; the
 * rest stay queued for the other consumers, and its credit waits: once its
 * application takes objects, it is handed more. */
static void
test_max_in_flight_bytes (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *producer, *hoarder, *worker;
  g_autoptr(GVariant) sample = g_variant_ref_sink (numbered_object (0));
  g_autoptr(GBytes) body = tlspyo_object_to_bytes (sample);
  guint64 cost = g_bytes_get_size (body) + IN_FLIGHT_OVERHEAD;
  g_autoptr(GPtrArray) got = NULL;
  WorkStats w;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  /* Handed while below the cap: exactly 10 objects, the 10th reaching it. */
  g_object_set (f.relay, "max-in-flight-bytes", 10 * cost, NULL);
  tlspyo_test_fixture_start (&f);
  producer = tlspyo_test_endpoint_start (&f, "producers");
  hoarder = tlspyo_test_endpoint_start (&f, "work");
  tlspyo_test_give_credit (hoarder, "work", 1000);

  for (guint i = 0; i < 50; i++)
    {
      g_autoptr(GError) error = NULL;

      g_assert_true (tlspyo_endpoint_produce (producer, numbered_object (i), "work", &error));
      g_assert_no_error (error);
    }
  tlspyo_test_flush (producer);
  wait_flight (f.relay, 10, 40);
  /* All 10 reached it, and the relay handed it no more. */
  tlspyo_test_wait_n_queued (hoarder, 10);
  w = work_stats (f.relay);
  g_assert_cmpuint (w.in_flight, ==, 10);
  g_assert_cmpuint (w.queued, ==, 40);
  g_assert_cmpuint (w.credit, ==, 990);

  /* Another consumer is served meanwhile, in order, capped the same way
   * but taking as it goes. */
  worker = tlspyo_test_endpoint_start (&f, "work");
  tlspyo_test_give_credit (worker, "work", 30);
  got = tlspyo_test_pop_n (worker, 30);
  assert_numbered (got, 0, 10, 30);
  g_clear_pointer (&got, g_ptr_array_unref);
  wait_flight (f.relay, 10, 10);

  /* The first one's application takes 5: 5 more go to it, its credit
   * intact. */
  got = tlspyo_test_pop_n (hoarder, 5);
  assert_numbered (got, 0, 0, 5);
  g_clear_pointer (&got, g_ptr_array_unref);
  wait_flight (f.relay, 10, 5);
  got = tlspyo_test_pop_n (hoarder, 10);
  assert_numbered (got, 0, 5, 5);
  assert_numbered (got, 5, 40, 5);
  g_clear_pointer (&got, g_ptr_array_unref);
  got = tlspyo_test_pop_n (hoarder, 5);
  assert_numbered (got, 0, 45, 5);
  wait_flight (f.relay, 0, 0);
  g_assert_cmpuint (work_stats (f.relay).credit, ==, 1000 - 20);

  tlspyo_test_fixture_teardown (&f);
}

/* A flood of connections over the limit: the relay holds at most a bounded
 * number of them to explain the refusal, closes the rest at once, and the
 * endpoint it serves is not affected. */
static void
test_refusal_flood (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *a;
  g_autoptr(GPtrArray) flood = g_ptr_array_new_with_free_func ((GDestroyNotify) raw_free);
  guint peak = 0;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  g_object_set (f.relay, "max-connections", 1, "handshake-timeout", 30, NULL);
  tlspyo_test_fixture_start (&f);
  a = tlspyo_test_endpoint_start (&f, "pair");

  for (guint i = 0; i < 100; i++)
    {
      g_ptr_array_add (flood, raw_attach (f.relay, "192.0.2.50"));
      peak = MAX (peak, tlspyo_relay_get_n_peers (f.relay));
    }
  /* 1 served + 64 held to be told why; the other 35 closed at once. */
  g_assert_cmpuint (peak, <=, 1 + 64);
  g_assert_cmpuint (tlspyo_relay_get_n_peers (f.relay), ==, 1 + 64);
  {
    Raw *last = g_ptr_array_index (flood, 99);

    raw_hello (last);
    raw_expect_closed (last);
  }
  {
    Raw *first = g_ptr_array_index (flood, 0);

    raw_hello (first);
    raw_expect_refused (first, TLSPYO_ERROR_LIMIT, "max-connections");
  }
  g_assert_true (tlspyo_endpoint_get_connected (a));
  tlspyo_test_broadcast_string (a, "unaffected", "pair");
  tlspyo_test_expect_string (a, "unaffected");

  g_ptr_array_set_size (flood, 0);
  tlspyo_test_fixture_teardown (&f);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  g_test_add_func ("/limits/defaults", test_defaults);
  TLSPYO_TEST_ADD ("/limits/max-connections", test_max_connections);
  g_test_add_func ("/limits/max-connections-per-address", test_max_connections_per_address);
  g_test_add_func ("/limits/auth-failures", test_auth_failures);
  g_test_add_func ("/limits/auth-failures-unlimited", test_auth_failures_unlimited);
  g_test_add_func ("/limits/max-groups-per-endpoint", test_max_groups);
  g_test_add_func ("/limits/group-names", test_group_names);
  g_test_add_func ("/limits/max-queued-bytes", test_max_queued_bytes);
  g_test_add_func ("/limits/max-in-flight-bytes", test_max_in_flight_bytes);
  g_test_add_func ("/limits/refusal-flood", test_refusal_flood);
  return g_test_run ();
}
