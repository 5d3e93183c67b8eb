/* SPDX-License-Identifier: MIT */
/* Named users and per-group rights (docs/security.md): password hashes,
 * what each right allows, what a denied action does (refused with a reason
 * the endpoint reports, the object goes nowhere, the connection stays), that
 * an unknown user looks like a wrong password, and that the shared password
 * keeps every right. */
#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"

#define REFUSAL_WARNINGS "*refused this endpoint*"
#define DENIAL_WARNINGS "*refused an action of this endpoint*"

/* The lowest round count endpoints accept: the tests derive many keys. */
#define ROUNDS TLSPYO_AUTH_MIN_ITERATIONS

#define TRAINER_PASSWORD "trainer's long random password"
#define WORKER_PASSWORD "worker's long random password"

/* Hashes */

static void
test_hash_format (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *hash = tlspyo_relay_hash_password ("secret", ROUNDS, &error);
  g_autofree char *again = tlspyo_relay_hash_password ("secret", ROUNDS, &error);
  g_auto(GStrv) parts = NULL;
  guint8 salt[TLSPYO_AUTH_SALT_SIZE], key[TLSPYO_AUTH_KEY_SIZE], expected[TLSPYO_AUTH_KEY_SIZE];
  gsize salt_len;
  guint rounds;

  g_assert_no_error (error);
  parts = g_strsplit (hash, "$", -1);
  g_assert_cmpuint (g_strv_length (parts), ==, 4);
  g_assert_cmpstr (parts[0], ==, "pbkdf2-sha256");
  g_assert_cmpstr (parts[1], ==, "10000");
  /* Salted: the same password hashes differently each time. */
  g_assert_cmpstr (hash, !=, again);
  g_assert_null (strstr (hash, "secret"));

  /* The key is PBKDF2-HMAC-SHA256 of the password with that salt. */
  g_assert_true (tlspyo_auth_parse_hash (hash, salt, &salt_len, &rounds, key, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (salt_len, ==, 16);
  g_assert_cmpuint (rounds, ==, ROUNDS);
  g_assert_true (tlspyo_auth_derive_key ("secret", salt, salt_len, rounds, expected, NULL));
  g_assert_cmpmem (key, sizeof key, expected, sizeof expected);

  /* The default round count. */
  g_clear_pointer (&hash, g_free);
  g_clear_pointer (&parts, g_strfreev);
  hash = tlspyo_relay_hash_password ("secret", 0, &error);
  g_assert_no_error (error);
  parts = g_strsplit (hash, "$", -1);
  g_assert_cmpstr (parts[1], ==, "200000");
}

static void
test_hash_errors (void)
{
  /* A clear password mistaken for a hash must not be echoed in the error. */
  static const char *bad[] = {
    "my clear password",
    "pbkdf2-sha256$10000$c2FsdA==",
    "pbkdf2-sha256$9999$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$10000000000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$+10000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$10000$c2Fs!A==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$10000$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$10000$c2FsdHNhbHRzYWx0c2FsdHM=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "pbkdf2-sha256$10000$c2FsdA==$AAAA",
    "pbkdf2-sha256$10000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$x",
    "pbkdf2-sha1$10000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "",
  };
  g_autoptr(TlspyoRelay) relay = tlspyo_relay_new (0, NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *hash = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (tlspyo_relay_add_user (relay, "alice", bad[i], &error));
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, "hash-password"));
      if (i == 0)
        g_assert_null (strstr (error->message, bad[i]));
      g_clear_error (&error);
    }
  g_assert_false (tlspyo_relay_add_user (relay, "alice", NULL, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  hash = tlspyo_relay_hash_password ("pw", ROUNDS, &error);
  g_assert_no_error (error);
  g_assert_false (tlspyo_relay_add_user (relay, "", hash, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (tlspyo_relay_add_user (relay, "tab\tname", hash, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_assert_null (tlspyo_relay_hash_password ("pw", 9999, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (tlspyo_relay_hash_password ("", ROUNDS, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* No password and no user: nothing could ever join. */
  g_assert_false (tlspyo_relay_start (relay, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
}

/* The tmrl arrangement: workers produce samples for the trainer, and only
 * the trainer broadcasts weights to the workers. */

static void
add_user (TlspyoRelay *relay,
          const char  *name,
          const char  *password)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *hash = tlspyo_relay_hash_password (password, ROUNDS, &error);

  g_assert_no_error (error);
  g_assert_true (tlspyo_relay_add_user (relay, name, hash, &error));
  g_assert_no_error (error);
}

static void
setup_tmrl (TlspyoTestFixture *f)
{
  add_user (f->relay, "trainer", TRAINER_PASSWORD);
  add_user (f->relay, "worker", WORKER_PASSWORD);
  tlspyo_relay_grant (f->relay, "trainer", "samples",
                      TLSPYO_RIGHTS_JOIN | TLSPYO_RIGHTS_CONSUME);
  tlspyo_relay_grant (f->relay, "trainer", "weights", TLSPYO_RIGHTS_BROADCAST);
  tlspyo_relay_grant (f->relay, "worker", "weights", TLSPYO_RIGHTS_JOIN);
  tlspyo_relay_grant (f->relay, "worker", "samples", TLSPYO_RIGHTS_PRODUCE);
  tlspyo_test_fixture_start (f);
}

static TlspyoEndpoint *
user_endpoint (TlspyoTestFixture *f,
               const char        *groups,
               const char        *user,
               const char        *password)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (f, groups);

  g_object_set (ep, "user", user, "password", password, NULL);
  return ep;
}

static TlspyoEndpoint *
user_endpoint_start (TlspyoTestFixture *f,
                     const char        *groups,
                     const char        *user,
                     const char        *password)
{
  TlspyoEndpoint *ep = user_endpoint (f, groups, user, password);
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  return ep;
}

static void
expect_refused (TlspyoEndpoint *ep,
                TlspyoError     code,
                const char     *text)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, (gint) code);
  if (strstr (error->message, text) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, text);
  tlspyo_endpoint_stop (ep);
}

typedef struct {
  TlspyoTestRefusals *d;
  guint               count;
} DenialWait;

static gboolean
denials_reached (gpointer data)
{
  DenialWait *w = data;

  return w->d->count >= w->count;
}

/* Waits for the @count-th denial, which must be PERMISSION_DENIED in
 * @group, with a reason naming @text. */
static void
expect_denial (TlspyoTestRefusals *d,
               guint               count,
               const char         *group,
               const char         *text)
{
  DenialWait w = { d, count };

  if (!tlspyo_test_wait_until (denials_reached, &w))
    g_error ("No action-refused signal within %d ms", TLSPYO_TEST_TIMEOUT_MS);
  g_assert_cmpuint (d->count, ==, count);
  g_assert_cmpstr (d->group, ==, group);
  g_assert_cmpint (d->code, ==, TLSPYO_ERROR_PERMISSION_DENIED);
  if (strstr (d->reason, text) == NULL)
    g_error ("“%s” does not mention “%s”", d->reason, text);
}

static void
send_string (TlspyoEndpoint *ep,
             const char     *text,
             const char     *group,
             gboolean        broadcast)
{
  g_autoptr(GError) error = NULL;

  if (broadcast)
    g_assert_true (tlspyo_endpoint_broadcast (ep, g_variant_new_string (text), group, &error));
  else
    g_assert_true (tlspyo_endpoint_produce (ep, g_variant_new_string (text), group, &error));
  g_assert_no_error (error);
}

static void
test_rights (TlspyoTestFixture *f,
             gconstpointer      data)
{
  TlspyoEndpoint *trainer, *worker, *worker2, *shared;
  TlspyoTestRefusals d = { 0 };
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate (DENIAL_WARNINGS);
  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  setup_tmrl (f);
  trainer = user_endpoint_start (f, "samples", "trainer", TRAINER_PASSWORD);
  worker = user_endpoint_start (f, "weights", "worker", WORKER_PASSWORD);
  worker2 = user_endpoint_start (f, "weights", "worker", WORKER_PASSWORD);
  tlspyo_test_refusals_watch_endpoint (&d, worker);

  /* Allowed: workers produce samples, the trainer consumes them... */
  send_string (worker, "sample 1", "samples", FALSE);
  g_assert_true (tlspyo_endpoint_notify_ready (trainer, "samples", 1, &error));
  tlspyo_test_expect_string (trainer, "sample 1");
  /* ...and broadcasts weights to the workers. */
  send_string (trainer, "weights 1", "weights", TRUE);
  tlspyo_test_expect_string (worker, "weights 1");
  tlspyo_test_expect_string (worker2, "weights 1");

  /* Denied: a worker broadcasting weights. The object goes nowhere, the
   * worker is told and stays connected. */
  send_string (worker, "forged weights", "weights", TRUE);
  g_assert_true (tlspyo_endpoint_flush (worker, TLSPYO_TEST_TIMEOUT_MS, &error));
  expect_denial (&d, 1, "weights", "may not broadcast");
  g_assert_nonnull (strstr (d.reason, "worker"));
  g_assert_null (strstr (d.reason, "forged"));
  tlspyo_test_expect_nothing (worker2, 200);
  g_assert_true (tlspyo_endpoint_get_connected (worker));

  /* Denied: consuming from a group it may only join. */
  g_assert_true (tlspyo_endpoint_notify_ready (worker, "weights", 1, &error));
  expect_denial (&d, 2, "weights", "may not consume");

  /* Denied: producing where it may not, within one send_object() going to
   * two groups: it goes to none. */
  {
    GVariantBuilder builder;

    g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
    g_variant_builder_add (&builder, "{si}", "samples", 1);
    g_variant_builder_add (&builder, "{si}", "weights", 1);
    g_assert_true (tlspyo_endpoint_send_object (worker, g_variant_new_string ("both"),
                                                g_variant_builder_end (&builder), &error));
    g_assert_no_error (error);
    expect_denial (&d, 3, "weights", "may not produce");
    g_assert_true (tlspyo_endpoint_notify_ready (trainer, "samples", 1, &error));
    tlspyo_test_expect_nothing (trainer, 200);
    send_string (worker, "sample 2", "samples", FALSE);
    tlspyo_test_expect_string (trainer, "sample 2");
  }

  /* A late joiner gets the trainer's weights, not the forged ones. */
  {
    TlspyoEndpoint *late = user_endpoint_start (f, "weights", "worker", WORKER_PASSWORD);

    tlspyo_test_expect_string (late, "weights 1");
  }

  /* Refused at connection: joining a group without the right. */
  expect_refused (user_endpoint (f, "weights,samples", "worker", WORKER_PASSWORD),
                  TLSPYO_ERROR_PERMISSION_DENIED, "may not join group 'samples'");
  /* The trainer may broadcast to weights but not join it. */
  expect_refused (user_endpoint (f, "weights", "trainer", TRAINER_PASSWORD),
                  TLSPYO_ERROR_PERMISSION_DENIED, "may not join group 'weights'");

  /* The shared password keeps every right. */
  shared = tlspyo_test_endpoint_start (f, "weights,samples");
  tlspyo_test_expect_string (shared, "weights 1");
  send_string (shared, "weights 2", "weights", TRUE);
  tlspyo_test_expect_string (shared, "weights 2");
  tlspyo_test_expect_string (worker, "weights 2");

  g_assert_cmpuint (d.count, ==, 3);
  tlspyo_test_refusals_clear (&d);
}

/* Grants apply at once to connected endpoints, and can be taken back. */
static void
test_live_grant (void)
{
  TlspyoTestFixture f = { 0 };
  TlspyoEndpoint *worker, *trainer;
  TlspyoTestRefusals d = { 0 };
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate (DENIAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  setup_tmrl (&f);
  trainer = user_endpoint_start (&f, "samples", "trainer", TRAINER_PASSWORD);
  worker = user_endpoint_start (&f, "weights", "worker", WORKER_PASSWORD);
  tlspyo_test_refusals_watch_endpoint (&d, worker);

  tlspyo_relay_grant (f.relay, "worker", "samples", TLSPYO_RIGHTS_NONE);
  send_string (worker, "taken back", "samples", FALSE);
  expect_denial (&d, 1, "samples", "may not produce");

  /* For every group: the rights add up. */
  tlspyo_relay_grant (f.relay, "worker", NULL, TLSPYO_RIGHTS_PRODUCE);
  send_string (worker, "given again", "samples", FALSE);
  g_assert_true (tlspyo_endpoint_notify_ready (trainer, "samples", 1, &error));
  tlspyo_test_expect_string (trainer, "given again");
  g_assert_cmpuint (d.count, ==, 1);

  tlspyo_test_refusals_clear (&d);
  tlspyo_test_fixture_teardown (&f);
}

/* A wrong password, an unknown user and another user's password all fail
 * the same way; a relay with users only refuses the shared password. */
static void
test_authentication (void)
{
  TlspyoTestFixture f = { 0 };

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  /* Every attempt answered at once, none blocking the address. */
  g_object_set (f.relay, "auth-failure-delay", 0, "max-auth-failures", 0, NULL);
  setup_tmrl (&f);

  expect_refused (user_endpoint (&f, "weights", "worker", "a wrong password"),
                  TLSPYO_ERROR_AUTHENTICATION, "Authentication failed");
  expect_refused (user_endpoint (&f, "weights", "worker", TRAINER_PASSWORD),
                  TLSPYO_ERROR_AUTHENTICATION, "Authentication failed");
  expect_refused (user_endpoint (&f, "weights", "nobody", WORKER_PASSWORD),
                  TLSPYO_ERROR_AUTHENTICATION, "Authentication failed");
  /* A named user with the shared password. */
  expect_refused (user_endpoint (&f, "weights", "worker", TLSPYO_TEST_PASSWORD),
                  TLSPYO_ERROR_AUTHENTICATION, "Authentication failed");
  tlspyo_relay_stop (f.relay);
  tlspyo_test_fixture_teardown (&f);

  /* Users only: the shared password is refused, users are served. */
  {
    TlspyoTestFixture g = { 0 };

    tlspyo_test_fixture_setup (&g, TLSPYO_SECURITY_NONE);
    g_object_set (g.relay, "password", NULL, NULL);
    setup_tmrl (&g);
    expect_refused (tlspyo_test_endpoint_new (&g, "weights"), TLSPYO_ERROR_AUTHENTICATION,
                    "no shared password");
    user_endpoint_start (&g, "weights", "worker", WORKER_PASSWORD);
    tlspyo_test_fixture_teardown (&g);
  }
}

/* An endpoint's user name must be a valid name: checked at start(). */
static void
test_endpoint_user_name (void)
{
  g_autoptr(TlspyoEndpoint) ep = tlspyo_endpoint_new ("127.0.0.1", 1, "pw",
                                                      (const char * const[]) { "g", NULL });
  g_autoptr(GError) error = NULL;
  g_autofree char *user = NULL;

  g_object_set (ep, "user", "bad\nname", "security", TLSPYO_SECURITY_NONE, NULL);
  g_assert_false (tlspyo_endpoint_start (ep, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  /* "" is no user, like NULL. */
  g_object_set (ep, "user", "", NULL);
  g_object_get (ep, "user", &user, NULL);
  g_assert_null (user);
}

/* On the wire: an unknown user gets a CHALLENGE like a real one's, with a
 * salt that is the same each time for the same name (so asking twice does
 * not tell names apart) and differs between names. */

static gboolean
challenge_salt_cb (const TlspyoFrame *frame,
                   gpointer           data)
{
  g_assert_cmpint (frame->type, ==, TLSPYO_FRAME_CHALLENGE);
  *(GVariant **) data = g_variant_get_child_value (frame->meta, 1);
  return FALSE;
}

static GBytes *
challenge_salt (guint       port,
                const char *user)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) conn = NULL;
  g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 0,
                                                                 TLSPYO_FRAME_MASK_ALL);
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 0 };
  GVariant *challenge = NULL;
  GSocket *socket;

  g_socket_client_set_enable_proxy (client, FALSE);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  socket = g_socket_connection_get_socket (conn);
  g_socket_set_timeout (socket, TLSPYO_TEST_TIMEOUT_MS / 1000);
  tlspyo_frame_append (out, TLSPYO_FRAME_HELLO_USER,
                       g_variant_new ("(u@ays)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                      g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                 sizeof nonce, 1),
                                      user), 0);
  g_assert_cmpint (g_socket_send (socket, (const char *) out->data, out->len, NULL, &error), ==,
                   out->len);
  while (challenge == NULL)
    {
      guint8 buffer[4096];
      gssize n = g_socket_receive (socket, (char *) buffer, sizeof buffer, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      g_assert_true (tlspyo_frame_decoder_feed (dec, buffer, n, challenge_salt_cb, &challenge,
                                                &error));
    }
  {
    gsize len;
    const guint8 *salt = g_variant_get_fixed_array (challenge, &len, 1);
    GBytes *bytes = g_bytes_new (salt, len);

    g_variant_unref (challenge);
    return bytes;
  }
}

static void
test_unknown_user_salt (void)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GBytes) nobody1 = NULL;
  g_autoptr(GBytes) nobody2 = NULL;
  g_autoptr(GBytes) other = NULL;
  g_autoptr(GBytes) worker1 = NULL;
  g_autoptr(GBytes) worker2 = NULL;

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  setup_tmrl (&f);
  nobody1 = challenge_salt (f.port, "nobody");
  nobody2 = challenge_salt (f.port, "nobody");
  other = challenge_salt (f.port, "somebody else");
  worker1 = challenge_salt (f.port, "worker");
  worker2 = challenge_salt (f.port, "worker");
  g_assert_cmpuint (g_bytes_get_size (nobody1), ==, g_bytes_get_size (worker1));
  g_assert_true (g_bytes_equal (nobody1, nobody2));
  g_assert_true (g_bytes_equal (worker1, worker2));
  g_assert_false (g_bytes_equal (nobody1, other));
  tlspyo_test_fixture_teardown (&f);
}

/* Mutual TLS: the relay requires a client certificate from its folder,
 * and the endpoint must then be the user the certificate belongs to. */

static TlspyoEndpoint *
certificate_endpoint (TlspyoTestFixture *f,
                      const char        *user,
                      const char        *password,
                      const char        *certificate_dir)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (f, "g");
  g_autoptr(GError) error = NULL;

  g_object_set (ep, "user", user, "password", password, NULL);
  if (certificate_dir != NULL)
    {
      g_autofree char *cert = g_build_filename (certificate_dir, "certificate.pem", NULL);
      g_autofree char *key = g_build_filename (certificate_dir, "key.pem", NULL);
      g_autoptr(GTlsCertificate) certificate = g_tls_certificate_new_from_files (cert, key,
                                                                                &error);

      g_assert_no_error (error);
      g_object_set (ep, "client-certificate", certificate, NULL);
    }
  return ep;
}

/* The relay refuses at the TLS handshake: with TLS 1.3 the endpoint only
 * sees the connection closed, so the relay's own report is checked. */
static void
expect_tls_refusal (TlspyoTestFixture  *f,
                    TlspyoTestRefusals *r,
                    TlspyoEndpoint     *ep)
{
  g_autoptr(GError) error = NULL;

  r->count = 0;
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  if (!tlspyo_test_wait_until (tlspyo_test_refusals_seen, r))
    g_error ("The relay refused nothing within %d ms", TLSPYO_TEST_TIMEOUT_MS);
  g_assert_cmpint (r->code, ==, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (r->reason, "client certificate"));
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  tlspyo_endpoint_stop (ep);
}

static void
test_client_certificates (void)
{
  TlspyoTestFixture f = { 0 };
  g_autofree char *alice_dir = tlspyo_test_make_credentials ();
  g_autofree char *mallory_dir = tlspyo_test_make_credentials ();
  g_autofree char *certs_dir = g_dir_make_tmp ("tlspyo-clients-XXXXXX", NULL);
  g_autofree char *alice_cert = g_build_filename (alice_dir, "certificate.pem", NULL);
  g_autofree char *pinned = g_build_filename (certs_dir, "alice.pem", NULL);
  g_autofree char *contents = NULL;
  TlspyoTestRefusals r = { 0 };
  TlspyoEndpoint *alice;
  gsize length;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  g_assert_true (g_file_get_contents (alice_cert, &contents, &length, NULL));
  g_assert_true (g_file_set_contents (pinned, contents, length, NULL));

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_TLS);
  add_user (f.relay, "alice", WORKER_PASSWORD);
  add_user (f.relay, "bob", TRAINER_PASSWORD);
  tlspyo_relay_grant (f.relay, "alice", "g", TLSPYO_RIGHTS_ALL);
  tlspyo_relay_grant (f.relay, "bob", "g", TLSPYO_RIGHTS_ALL);
  g_object_set (f.relay, "client-certificates-dir", certs_dir, NULL);
  tlspyo_test_refusals_watch_relay (&r, f.relay);
  tlspyo_test_fixture_start (&f);

  /* Alice's certificate, as alice: in. */
  alice = certificate_endpoint (&f, "alice", WORKER_PASSWORD, alice_dir);
  {
    g_autoptr(GError) error = NULL;

    g_assert_true (tlspyo_endpoint_start (alice, &error));
    g_assert_true (tlspyo_endpoint_wait_connected (alice, TLSPYO_TEST_TIMEOUT_MS, &error));
    g_assert_no_error (error);
    send_string (alice, "with a certificate", "g", TRUE);
    tlspyo_test_expect_string (alice, "with a certificate");
  }

  /* Alice's certificate, as bob or with the shared password: refused, with
   * a reason naming the certificate's user. */
  expect_refused (certificate_endpoint (&f, "bob", TRAINER_PASSWORD, alice_dir),
                  TLSPYO_ERROR_PERMISSION_DENIED, "user 'alice'");
  expect_refused (certificate_endpoint (&f, NULL, TLSPYO_TEST_PASSWORD, alice_dir),
                  TLSPYO_ERROR_PERMISSION_DENIED, "user 'alice'");

  /* A certificate not in the folder, or none: refused at the TLS handshake,
   * whatever the password. */
  expect_tls_refusal (&f, &r, certificate_endpoint (&f, "alice", WORKER_PASSWORD, mallory_dir));
  expect_tls_refusal (&f, &r, certificate_endpoint (&f, "alice", WORKER_PASSWORD, NULL));

  g_assert_true (tlspyo_endpoint_get_connected (alice));
  tlspyo_test_fixture_teardown (&f);
  tlspyo_test_refusals_clear (&r);

  /* Setup errors, found by start(). */
  {
    g_autofree char *empty_dir = g_dir_make_tmp ("tlspyo-clients-XXXXXX", NULL);
    g_autoptr(TlspyoRelay) relay = NULL;
    g_autoptr(GError) error = NULL;

    relay = g_object_new (TLSPYO_TYPE_RELAY, "port", 0, "address", "127.0.0.1",
                          "password", "pw", "security", TLSPYO_SECURITY_NONE,
                          "client-certificates-dir", certs_dir, NULL);
    g_assert_false (tlspyo_relay_start (relay, &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    g_clear_object (&relay);

    relay = g_object_new (TLSPYO_TYPE_RELAY, "port", 0, "address", "127.0.0.1",
                          "password", "pw", "credentials-dir", alice_dir,
                          "client-certificates-dir", empty_dir, NULL);
    g_assert_false (tlspyo_relay_start (relay, &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
    g_assert_nonnull (strstr (error->message, "USER.pem"));
    tlspyo_test_remove_dir (empty_dir);
  }

  tlspyo_test_remove_dir (alice_dir);
  tlspyo_test_remove_dir (mallory_dir);
  tlspyo_test_remove_dir (certs_dir);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  g_test_add_func ("/permissions/hash/format", test_hash_format);
  g_test_add_func ("/permissions/hash/errors", test_hash_errors);
  TLSPYO_TEST_ADD ("/permissions/rights", test_rights);
  g_test_add_func ("/permissions/live-grant", test_live_grant);
  g_test_add_func ("/permissions/authentication", test_authentication);
  g_test_add_func ("/permissions/endpoint-user-name", test_endpoint_user_name);
  g_test_add_func ("/permissions/unknown-user-salt", test_unknown_user_salt);
  g_test_add_func ("/permissions/client-certificates", test_client_certificates);
  return g_test_run ();
}
