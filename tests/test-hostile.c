/* SPDX-License-Identifier: MIT */
/* Every byte from the network is hostile. A relay is fed garbage, huge
 * lengths, truncated and out-of-order frames, silent connections and
 * malformed objects by raw sockets that speak (or abuse) the wire protocol
 * themselves; endpoints are fed fake relays. In every case the bad
 * connection alone is closed, with the reason reported, and a legitimate
 * pair of endpoints connected before keeps working, as does one connected
 * after. Authentication is attacked too: wrong password, fake relays,
 * replayed proofs, and a recording of the wire that must not contain the
 * password. */
#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-error.h"

#define MiB (1024 * 1024)
/* Long enough that a relay that waits for data it should have refused is
 * caught by our bounded waits instead of passing through its timeout. */
#define LONG_HANDSHAKE_TIMEOUT_S 60

/* memmem() is a GNU extension; this is all the tests need. */
static const guint8 *
find_bytes (const guint8 *haystack,
            gsize         haystack_len,
            const void   *needle,
            gsize         needle_len)
{
  if (needle_len == 0 || needle_len > haystack_len)
    return NULL;
  for (gsize i = 0; i + needle_len <= haystack_len; i++)
    if (haystack[i] == *(const guint8 *) needle &&
        memcmp (haystack + i, needle, needle_len) == 0)
      return haystack + i;
  return NULL;
}

/* Raw client: a blocking socket with a receive timeout, and a decoder for
 * what the relay sends back. */

typedef struct {
  TlspyoFrameType  type;
  GVariant        *meta;
  GBytes          *body;
} RawFrame;

typedef struct {
  GSocketConnection  *conn;
  GSocket            *socket;
  TlspyoFrameDecoder *decoder;
  GQueue              frames;    /* of RawFrame */
  gboolean            closed;    /* the relay closed (EOF or reset) */
  guint8              endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8              relay_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8              key[TLSPYO_AUTH_KEY_SIZE];
  GBytes             *hello;     /* the HELLO frame as sent, for replays */
  GBytes             *auth;      /* the AUTH frame as sent, for replays */
} RawClient;

static void
raw_frame_free (gpointer data)
{
  RawFrame *frame = data;

  g_variant_unref (frame->meta);
  g_clear_pointer (&frame->body, g_bytes_unref);
  g_free (frame);
}

static RawClient *
raw_connect (guint port)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  RawClient *rc = g_new0 (RawClient, 1);

  g_socket_client_set_enable_proxy (client, FALSE);
  g_socket_client_set_timeout (client, TLSPYO_TEST_TIMEOUT_MS / 1000);
  rc->conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  rc->socket = g_socket_connection_get_socket (rc->conn);
  /* Every read is bounded: a relay that neither answers nor closes fails
   * the test instead of hanging it. */
  g_socket_set_timeout (rc->socket, TLSPYO_TEST_TIMEOUT_MS / 1000);
  rc->decoder = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 512 * MiB,
                                          TLSPYO_FRAME_MASK_ALL);
  g_queue_init (&rc->frames);
  return rc;
}

static void
raw_free (RawClient *rc)
{
  g_io_stream_close (G_IO_STREAM (rc->conn), NULL, NULL);
  g_object_unref (rc->conn);
  tlspyo_frame_decoder_free (rc->decoder);
  g_queue_clear_full (&rc->frames, raw_frame_free);
  g_clear_pointer (&rc->hello, g_bytes_unref);
  g_clear_pointer (&rc->auth, g_bytes_unref);
  g_free (rc);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RawClient, raw_free)

/* Sends all of @data; the relay may close first, which is not an error
 * here: what the relay did is checked by reading. */
static gboolean
raw_send (RawClient  *rc,
          const void *data,
          gsize       len)
{
  const guint8 *p = data;

  while (len > 0)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_send (rc->socket, (const char *) p, len, NULL, &error);

      if (n < 0)
        {
          g_assert_false (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
          return FALSE;
        }
      p += n;
      len -= n;
    }
  return TRUE;
}

static gboolean
raw_send_bytes (RawClient *rc,
                GBytes    *bytes)
{
  gsize len;
  const void *data = g_bytes_get_data (bytes, &len);

  return raw_send (rc, data, len);
}

/* A frame exactly as the library would write it. */
static GBytes *
raw_send_frame (RawClient       *rc,
                TlspyoFrameType  type,
                GVariant        *meta,
                const void      *body,
                gsize            body_len)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();

  tlspyo_frame_append (out, type, meta, body_len);
  g_assert_cmpuint (out->len, >, 0);
  if (body_len > 0)
    g_byte_array_append (out, body, body_len);
  raw_send (rc, out->data, out->len);
  return g_byte_array_free_to_bytes (g_steal_pointer (&out));
}

/* A header with whatever fields the test wants, valid or not. */
static void
raw_send_header (RawClient *rc,
                 guint8     magic,
                 guint8     version,
                 guint8     type,
                 guint32    meta_len,
                 guint64    body_len)
{
  guint8 header[TLSPYO_FRAME_HEADER_SIZE];

  tlspyo_frame_write_header (header, TLSPYO_FRAME_HELLO, meta_len, body_len);
  header[0] = magic;
  header[1] = version;
  header[2] = type;
  raw_send (rc, header, sizeof header);
}

static gboolean
collect_frame_cb (const TlspyoFrame *frame,
                  gpointer           user_data)
{
  RawClient *rc = user_data;
  RawFrame *copy = g_new0 (RawFrame, 1);

  copy->type = frame->type;
  copy->meta = g_variant_ref (frame->meta);
  copy->body = frame->body ? g_bytes_ref (frame->body) : NULL;
  g_queue_push_tail (&rc->frames, copy);
  return TRUE;
}

/* Reads once. FALSE once the relay closed. A read that times out fails the
 * test: the relay must answer or close. */
static gboolean
raw_read_some (RawClient *rc)
{
  g_autoptr(GError) error = NULL;
  guint8 buffer[64 * 1024];
  gssize n;

  if (rc->closed)
    return FALSE;
  n = g_socket_receive (rc->socket, (char *) buffer, sizeof buffer, NULL, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_error ("The relay neither answered nor closed within %d ms", TLSPYO_TEST_TIMEOUT_MS);
  if (n <= 0)
    {
      /* EOF, or a reset when the relay closed with our bytes unread. */
      rc->closed = TRUE;
      return FALSE;
    }
  if (!tlspyo_frame_decoder_feed (rc->decoder, buffer, n, collect_frame_cb, rc, &error))
    g_error ("The relay sent a malformed frame: %s", error->message);
  return TRUE;
}

/* The next frame other than ACK (or ACK itself if asked for), or NULL when
 * the relay closed first. */
static RawFrame *
raw_next_frame (RawClient       *rc,
                TlspyoFrameType  type)
{
  for (;;)
    {
      RawFrame *frame;

      while ((frame = g_queue_pop_head (&rc->frames)) != NULL)
        {
          if (frame->type == type || frame->type != TLSPYO_FRAME_ACK)
            return frame;
          raw_frame_free (frame);
        }
      if (!raw_read_some (rc))
        return NULL;
    }
}

static RawFrame *
raw_expect_frame (RawClient       *rc,
                  TlspyoFrameType  type)
{
  RawFrame *frame = raw_next_frame (rc, type);

  if (frame == NULL)
    g_error ("The relay closed the connection where a %s frame was expected",
             tlspyo_frame_type_to_string (type));
  if (frame->type != type)
    g_error ("The relay sent %s where %s was expected", tlspyo_frame_type_to_string (frame->type),
             tlspyo_frame_type_to_string (type));
  return frame;
}

/* Reads until the relay closes (bounded); what came before stays queued. */
static void
raw_expect_closed (RawClient *rc)
{
  while (raw_read_some (rc))
    ;
  g_assert_true (rc->closed);
}

/* Half-closes our side, so that the relay sees the end of what we sent. */
static void
raw_shutdown_write (RawClient *rc)
{
  g_socket_shutdown (rc->socket, FALSE, TRUE, NULL);
}

static void
raw_hello (RawClient    *rc,
           const guint8 *nonce)
{
  if (nonce != NULL)
    memcpy (rc->endpoint_nonce, nonce, TLSPYO_AUTH_NONCE_SIZE);
  else
    tlspyo_auth_random (rc->endpoint_nonce, TLSPYO_AUTH_NONCE_SIZE);
  g_clear_pointer (&rc->hello, g_bytes_unref);
  rc->hello = raw_send_frame (rc, TLSPYO_FRAME_HELLO,
                              g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                             g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                        rc->endpoint_nonce,
                                                                        TLSPYO_AUTH_NONCE_SIZE, 1)),
                              NULL, 0);
}

/* Reads the CHALLENGE and derives the key from @password. */
static void
raw_read_challenge (RawClient  *rc,
                    const char *password)
{
  RawFrame *frame = raw_expect_frame (rc, TLSPYO_FRAME_CHALLENGE);
  g_autoptr(GVariant) nonce = NULL;
  g_autoptr(GVariant) salt = NULL;
  g_autoptr(GError) error = NULL;
  const guint8 *salt_data, *nonce_data;
  gsize salt_len, nonce_len;
  guint32 iterations;

  g_variant_get (frame->meta, "(@ay@ayu)", &nonce, &salt, &iterations);
  nonce_data = g_variant_get_fixed_array (nonce, &nonce_len, 1);
  salt_data = g_variant_get_fixed_array (salt, &salt_len, 1);
  g_assert_cmpuint (nonce_len, ==, TLSPYO_AUTH_NONCE_SIZE);
  g_assert_cmpuint (iterations, >=, TLSPYO_AUTH_MIN_ITERATIONS);
  memcpy (rc->relay_nonce, nonce_data, nonce_len);
  g_assert_true (tlspyo_auth_derive_key (password, salt_data, salt_len, iterations, rc->key,
                                         &error));
  g_assert_no_error (error);
  raw_frame_free (frame);
}

static void
raw_send_auth (RawClient          *rc,
               const char * const *groups)
{
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE];

  tlspyo_auth_proof (rc->key, TLSPYO_AUTH_ROLE_ENDPOINT, rc->endpoint_nonce, rc->relay_nonce,
                     proof);
  g_clear_pointer (&rc->auth, g_bytes_unref);
  rc->auth = raw_send_frame (rc, TLSPYO_FRAME_AUTH,
                             g_variant_new ("(@ay^as)",
                                            g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                                       sizeof proof, 1),
                                            groups),
                             NULL, 0);
}

/* The real handshake, done by hand; checks the relay's proof too. */
static void
raw_handshake (RawClient          *rc,
               const char * const *groups)
{
  RawFrame *welcome;
  g_autoptr(GVariant) proof_v = NULL;
  guint8 expected[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *proof;
  gsize len;

  raw_hello (rc, NULL);
  raw_read_challenge (rc, TLSPYO_TEST_PASSWORD);
  raw_send_auth (rc, groups);
  welcome = raw_expect_frame (rc, TLSPYO_FRAME_WELCOME);
  proof_v = g_variant_get_child_value (welcome->meta, 0);
  proof = g_variant_get_fixed_array (proof_v, &len, 1);
  tlspyo_auth_proof (rc->key, TLSPYO_AUTH_ROLE_RELAY, rc->endpoint_nonce, rc->relay_nonce,
                     expected);
  g_assert_cmpmem (proof, len, expected, sizeof expected);
  raw_frame_free (welcome);
}

#define GROUPS(...) ((const char * const[]) { __VA_ARGS__, NULL })

/* An OBJECT frame with a body of our choosing. */
static void
raw_send_object (RawClient    *rc,
                 const char   *group,
                 const guint8 *body,
                 gsize         body_len)
{
  GVariantBuilder builder;
  g_autoptr(GBytes) sent = NULL;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&builder, "{si}", group, -1);
  sent = raw_send_frame (rc, TLSPYO_FRAME_OBJECT, g_variant_new ("(a{si})", &builder),
                         body, body_len);
}

/* The hostile-relay fixture: a TCP (or TLS) relay with a 1 MiB object
 * limit, whose refusals are recorded, and a legitimate pair of endpoints
 * connected before anything hostile happens. */

typedef struct {
  TlspyoError  code;
  char        *reason;
} Refusal;

typedef struct {
  TlspyoTestFixture  f;
  GQueue             refusals;   /* of Refusal */
  guint              n_joined;
  guint              n_left;
  TlspyoEndpoint    *sender;
  TlspyoEndpoint    *receiver;
  guint              legit_drops;
} Hostile;

static void
refusal_free (gpointer data)
{
  Refusal *r = data;

  g_free (r->reason);
  g_free (r);
}

static void
refused_cb (TlspyoRelay *relay,
            const char  *address,
            TlspyoError  code,
            const char  *reason,
            Hostile     *h)
{
  Refusal *r = g_new0 (Refusal, 1);

  g_assert_nonnull (address);
  r->code = code;
  r->reason = g_strdup (reason);
  g_queue_push_tail (&h->refusals, r);
}

static void
connected_cb (TlspyoRelay  *relay,
              const char   *address,
              const char  **groups,
              Hostile      *h)
{
  h->n_joined++;
}

static void
disconnected_cb (TlspyoRelay *relay,
                 const char  *address,
                 Hostile     *h)
{
  h->n_left++;
}

static void
legit_notify_cb (GObject    *object,
                 GParamSpec *pspec,
                 Hostile    *h)
{
  if (!tlspyo_endpoint_get_connected (TLSPYO_ENDPOINT (object)))
    h->legit_drops++;
}

static TlspyoEndpoint *
legit_endpoint (Hostile    *h,
                const char *group)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_start (&h->f, group);

  g_signal_connect (ep, "notify::connected", G_CALLBACK (legit_notify_cb), h);
  return ep;
}

static void
hostile_setup_full (Hostile        *h,
                    TlspyoSecurity  security,
                    guint           handshake_timeout)
{
  memset (h, 0, sizeof *h);
  g_queue_init (&h->refusals);
  tlspyo_test_fixture_setup (&h->f, security);
  g_object_set (h->f.relay,
                "max-object-size", (guint64) MiB,
                "handshake-timeout", handshake_timeout,
                NULL);
  g_signal_connect (h->f.relay, "endpoint-refused", G_CALLBACK (refused_cb), h);
  g_signal_connect (h->f.relay, "endpoint-connected", G_CALLBACK (connected_cb), h);
  g_signal_connect (h->f.relay, "endpoint-disconnected", G_CALLBACK (disconnected_cb), h);
  tlspyo_test_fixture_start (&h->f);

  h->receiver = legit_endpoint (h, "target");
  h->sender = legit_endpoint (h, "senders");
}

static void
hostile_setup (Hostile *h)
{
  hostile_setup_full (h, TLSPYO_SECURITY_NONE, LONG_HANDSHAKE_TIMEOUT_S);
}

static gboolean
has_refusal (gpointer data)
{
  return !g_queue_is_empty (&((Hostile *) data)->refusals);
}

/* The next refusal the relay announced (bounded wait); checks its code, or
 * that it is one of PROTOCOL and CLOSED when @code is -1. Returns its
 * reason. */
static char *
expect_refusal (Hostile *h,
                int      code)
{
  Refusal *r;
  char *reason;

  if (!tlspyo_test_wait_until (has_refusal, h))
    g_error ("The relay announced no refusal within %d ms", TLSPYO_TEST_TIMEOUT_MS);
  r = g_queue_pop_head (&h->refusals);
  g_test_message ("refused (%d): %s", r->code, r->reason);
  if (code >= 0)
    g_assert_cmpint (r->code, ==, code);
  else
    g_assert_true (r->code == TLSPYO_ERROR_PROTOCOL || r->code == TLSPYO_ERROR_CLOSED);
  g_assert_nonnull (r->reason);
  g_assert_cmpstr (r->reason, !=, "");
  reason = g_steal_pointer (&r->reason);
  refusal_free (r);
  return reason;
}

static void
expect_refusal_containing (Hostile    *h,
                           int         code,
                           const char *text)
{
  g_autofree char *reason = expect_refusal (h, code);

  if (strstr (reason, text) == NULL)
    g_error ("Refusal “%s” does not mention “%s”", reason, text);
}

/* The end of every hostile test: the relay still serves the legitimate
 * pair connected before, which never lost its connection, and a pair that
 * connects now; nothing hostile reached the receivers or stayed as the
 * group's latest broadcast (@retained, when the test itself broadcast one
 * legitimately); no refusal went unexplained. */
static void
hostile_finish_retained (Hostile    *h,
                         const char *retained)
{
  TlspyoEndpoint *receiver2, *sender2;

  g_assert_true (tlspyo_endpoint_get_connected (h->sender));
  g_assert_true (tlspyo_endpoint_get_connected (h->receiver));

  receiver2 = legit_endpoint (h, "target");
  sender2 = legit_endpoint (h, "senders");
  if (retained != NULL)
    tlspyo_test_expect_string (receiver2, retained);

  tlspyo_test_broadcast_string (h->sender, "check 1", "target");
  tlspyo_test_expect_string (h->receiver, "check 1");
  tlspyo_test_expect_string (receiver2, "check 1");
  tlspyo_test_broadcast_string (sender2, "check 2", "target");
  tlspyo_test_expect_string (h->receiver, "check 2");
  tlspyo_test_expect_string (receiver2, "check 2");
  tlspyo_test_expect_nothing (h->receiver, 0);

  g_assert_cmpuint (h->legit_drops, ==, 0);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (h->f.relay), >=, 4);
  if (!g_queue_is_empty (&h->refusals))
    {
      Refusal *r = g_queue_peek_head (&h->refusals);
      g_error ("Unexpected refusal (%d): %s", r->code, r->reason);
    }

  tlspyo_test_fixture_teardown (&h->f);
  g_queue_clear_full (&h->refusals, refusal_free);
}

static void
hostile_finish (Hostile *h)
{
  hostile_finish_retained (h, NULL);
}

/* Random bytes */

static void
send_random (RawClient *rc,
             GRand     *rand,
             gboolean   frame_prefix)
{
  gsize len = g_rand_int_range (rand, 1, 4096);
  g_autofree guint8 *data = g_malloc (len + TLSPYO_FRAME_HEADER_SIZE);
  gsize off = 0;

  if (frame_prefix)
    {
      /* A plausible header (magic, version, a random known type, no flags)
       * with random lengths, so the garbage reaches the length checks and
       * the metadata parser instead of failing on the first byte. */
      data[0] = TLSPYO_FRAME_MAGIC;
      data[1] = TLSPYO_PROTOCOL_VERSION;
      data[2] = (guint8) g_rand_int_range (rand, 1, TLSPYO_FRAME_TYPE_LAST + 1);
      data[3] = 0;
      off = 4;
      /* Half the time a small metadata length, so that it gets parsed. */
      if (g_rand_boolean (rand))
        {
          guint32 meta_len = g_rand_int_range (rand, 1, 128);
          for (guint i = 0; i < 4; i++)
            data[off++] = (guint8) (meta_len >> (8 * i));
          for (guint i = 0; i < 8; i++)
            data[off++] = 0;
        }
    }
  for (gsize i = off; i < len + TLSPYO_FRAME_HEADER_SIZE; i++)
    data[i] = (guint8) g_rand_int (rand);
  raw_send (rc, data, len + TLSPYO_FRAME_HEADER_SIZE);
  raw_shutdown_write (rc);
}

static void
run_random (Hostile  *h,
            guint32   seed,
            gboolean  frame_prefix,
            guint     n_sequential,
            guint     n_parallel)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);
  RawClient *parallel[32];

  g_assert_cmpuint (n_parallel, <=, G_N_ELEMENTS (parallel));

  for (guint i = 0; i < n_sequential; i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h->f.port);
      g_autofree char *reason = NULL;

      send_random (rc, rand, frame_prefix);
      raw_expect_closed (rc);
      reason = expect_refusal (h, -1);
    }

  /* Many at once: each is dropped on its own. */
  for (guint i = 0; i < n_parallel; i++)
    parallel[i] = raw_connect (h->f.port);
  for (guint i = 0; i < n_parallel; i++)
    send_random (parallel[i], rand, frame_prefix);
  for (guint i = 0; i < n_parallel; i++)
    {
      g_autofree char *reason = NULL;

      raw_expect_closed (parallel[i]);
      raw_free (parallel[i]);
      reason = expect_refusal (h, -1);
    }
}

static void
test_random_bytes (void)
{
  Hostile h;

  hostile_setup (&h);
  run_random (&h, 4242, FALSE, 48, 16);
  hostile_finish (&h);
}

static void
test_random_frames (void)
{
  Hostile h;

  hostile_setup (&h);
  run_random (&h, 1717, TRUE, 48, 16);
  hostile_finish (&h);
}

/* Garbage after a real handshake: the joined connection is dropped with
 * PROTOCOL (or CLOSED when the garbage happened to end cleanly), the relay
 * says why, and nothing reaches the group. */
static void
test_random_after_auth (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (99);
  Hostile h;

  hostile_setup (&h);
  for (guint i = 0; i < 16; i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);
      g_autofree char *reason = NULL;

      raw_handshake (rc, GROUPS ("attackers"));
      send_random (rc, rand, i % 2 == 0);
      raw_expect_closed (rc);
      reason = expect_refusal (&h, -1);
    }
  hostile_finish (&h);
}

/* Huge lengths: refused from the header alone, before anything is
 * allocated or waited for. */

static void
test_huge_lengths_handshake (void)
{
  static const struct {
    guint8  type;
    guint32 meta_len;
    guint64 body_len;
  } headers[] = {
    { TLSPYO_FRAME_HELLO, G_MAXUINT32, 0 },
    { TLSPYO_FRAME_HELLO, TLSPYO_FRAME_MAX_META_HANDSHAKE + 1, 0 },
    { TLSPYO_FRAME_HELLO, 40, G_GUINT64_CONSTANT (1) << 63 },
    { TLSPYO_FRAME_HELLO, 40, G_MAXUINT64 },
    { TLSPYO_FRAME_OBJECT, 16, (G_GUINT64_CONSTANT (1) << 63) - 1 },
    { TLSPYO_FRAME_DELIVER, 16, G_MAXUINT64 },
  };
  Hostile h;

  hostile_setup (&h);
  for (guint i = 0; i < G_N_ELEMENTS (headers); i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);

      raw_send_header (rc, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, headers[i].type,
                       headers[i].meta_len, headers[i].body_len);
      /* Our side stays open: the relay must not wait for the rest. */
      raw_expect_closed (rc);
      g_free (expect_refusal (&h, TLSPYO_ERROR_PROTOCOL));
    }
  hostile_finish (&h);
}

static void
test_huge_lengths_joined (void)
{
  static const struct {
    guint32 meta_len;
    guint64 body_len;
  } headers[] = {
    { 16, G_GUINT64_CONSTANT (1) << 63 },
    { 16, G_MAXUINT64 },
    { 16, MiB + 1 },
    { TLSPYO_FRAME_MAX_META + 1, 16 },
    { G_MAXUINT32, 16 },
  };
  Hostile h;

  hostile_setup (&h);
  for (guint i = 0; i < G_N_ELEMENTS (headers); i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);

      raw_handshake (rc, GROUPS ("attackers"));
      raw_send_header (rc, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_OBJECT,
                       headers[i].meta_len, headers[i].body_len);
      raw_expect_closed (rc);
      g_free (expect_refusal (&h, TLSPYO_ERROR_PROTOCOL));
    }
  hostile_finish (&h);
}

/* A real 2 MiB object, sent whole, to a relay that takes 1 MiB: the
 * connection is dropped and the object goes nowhere. */
static void
test_object_too_large (void)
{
  g_autoptr(RawClient) rc = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autofree guint8 *data = g_malloc (2 * MiB);
  Hostile h;

  hostile_setup (&h);
  memset (data, 'x', 2 * MiB);
  body = tlspyo_object_to_bytes (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, 2 * MiB, 1));

  rc = raw_connect (h.f.port);
  raw_handshake (rc, GROUPS ("attackers"));
  raw_send_object (rc, "target", g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  raw_expect_closed (rc);
  expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "exceeds");

  /* One of exactly the limit goes through, on a new connection ("ay" of
   * n bytes: n, a NUL and the type, 3 bytes more). */
  {
    g_autoptr(RawClient) ok = raw_connect (h.f.port);
    g_autoptr(GBytes) fits = tlspyo_object_to_bytes (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                                data, MiB - 3, 1));
    RawFrame *ack;

    g_assert_cmpuint (g_bytes_get_size (fits), ==, MiB);
    raw_handshake (ok, GROUPS ("attackers"));
    raw_send_object (ok, "nobody", g_bytes_get_data (fits, NULL), g_bytes_get_size (fits));
    ack = raw_expect_frame (ok, TLSPYO_FRAME_ACK);
    raw_frame_free (ack);
  }

  hostile_finish (&h);
}

/* Truncated frames, then the peer closes. */

static void
test_truncated (void)
{
  g_autoptr(GBytes) hello = NULL;
  Hostile h;

  hostile_setup (&h);

  {
    g_autoptr(GByteArray) out = g_byte_array_new ();
    guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 0 };

    tlspyo_frame_append (out, TLSPYO_FRAME_HELLO,
                         g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                   sizeof nonce, 1)),
                         0);
    hello = g_byte_array_free_to_bytes (g_steal_pointer (&out));
  }

  /* Before authentication: cut in the header, and in the metadata. */
  {
    const gsize cuts[] = { 1, 2, 3, 8, TLSPYO_FRAME_HEADER_SIZE - 1, TLSPYO_FRAME_HEADER_SIZE,
                           TLSPYO_FRAME_HEADER_SIZE + 1, g_bytes_get_size (hello) - 1 };

    for (guint i = 0; i < G_N_ELEMENTS (cuts); i++)
      {
        g_autoptr(RawClient) rc = raw_connect (h.f.port);

        raw_send (rc, g_bytes_get_data (hello, NULL), cuts[i]);
        raw_shutdown_write (rc);
        raw_expect_closed (rc);
        expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "middle of a frame");
      }
  }

  /* After authentication: cut in an object's body. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GBytes) body = tlspyo_object_to_bytes (g_variant_new_string ("never complete"));
    g_autoptr(GByteArray) out = g_byte_array_new ();
    GVariantBuilder builder;

    raw_handshake (rc, GROUPS ("attackers"));
    g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
    g_variant_builder_add (&builder, "{si}", "target", -1);
    tlspyo_frame_append (out, TLSPYO_FRAME_OBJECT, g_variant_new ("(a{si})", &builder),
                         g_bytes_get_size (body));
    g_byte_array_append (out, g_bytes_get_data (body, NULL), g_bytes_get_size (body) - 3);
    raw_send (rc, out->data, out->len);
    raw_shutdown_write (rc);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "middle of a frame");
  }

  hostile_finish (&h);
}

/* Frames before authentication. */

static void
test_frames_before_auth (void)
{
  g_autoptr(GBytes) object = tlspyo_object_to_bytes (g_variant_new_string ("sneaky"));
  Hostile h;

  hostile_setup (&h);

  /* OBJECT as the first frame. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);

    raw_send_object (rc, "target", g_bytes_get_data (object, NULL), g_bytes_get_size (object));
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "OBJECT");
  }

  /* NOTIFY as the first frame. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GBytes) sent = NULL;

    sent = raw_send_frame (rc, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "target", -1), NULL, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "NOTIFY");
  }

  /* AUTH before HELLO, even with a proof made with the right key. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);

    raw_send_auth (rc, GROUPS ("target"));
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "AUTH");
  }

  /* After HELLO, before AUTH: OBJECT, NOTIFY, a second HELLO, and frames
   * only a relay sends. */
  {
    const TlspyoFrameType types[] = { TLSPYO_FRAME_OBJECT, TLSPYO_FRAME_NOTIFY, TLSPYO_FRAME_HELLO,
                                      TLSPYO_FRAME_WELCOME, TLSPYO_FRAME_DELIVER };

    for (guint i = 0; i < G_N_ELEMENTS (types); i++)
      {
        g_autoptr(RawClient) rc = raw_connect (h.f.port);
        g_autoptr(GBytes) sent = NULL;
        RawFrame *challenge;

        raw_hello (rc, NULL);
        challenge = raw_expect_frame (rc, TLSPYO_FRAME_CHALLENGE);
        raw_frame_free (challenge);
        switch (types[i])
          {
          case TLSPYO_FRAME_OBJECT:
            raw_send_object (rc, "target", g_bytes_get_data (object, NULL),
                             g_bytes_get_size (object));
            break;
          case TLSPYO_FRAME_NOTIFY:
            sent = raw_send_frame (rc, types[i], g_variant_new ("(si)", "target", -1), NULL, 0);
            break;
          case TLSPYO_FRAME_HELLO:
            raw_hello (rc, NULL);
            break;
          case TLSPYO_FRAME_WELCOME:
            sent = raw_send_frame (rc, types[i],
                                   g_variant_new ("(@ay)",
                                                  g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                             rc->endpoint_nonce,
                                                                             32, 1)),
                                   NULL, 0);
            break;
          case TLSPYO_FRAME_DELIVER:
            sent = raw_send_frame (rc, types[i],
                                   g_variant_new ("(stt)", "target", (guint64) 1, (guint64) 1),
                                   g_bytes_get_data (object, NULL), g_bytes_get_size (object));
            break;
          default:
            g_assert_not_reached ();
          }
        raw_expect_closed (rc);
        expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL,
                                   tlspyo_frame_type_to_string (types[i]));
      }
  }

  hostile_finish (&h);
}

/* The size of AUTH metadata with @groups (no NULL at the end). */
static gsize
auth_meta_size (GPtrArray *groups)
{
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE] = { 0 };
  g_autoptr(GVariant) meta = NULL;

  g_ptr_array_add (groups, NULL);
  meta = g_variant_ref_sink (g_variant_new ("(@ay^as)",
                                            g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                                       sizeof proof, 1),
                                            (char **) groups->pdata));
  g_ptr_array_remove_index (groups, groups->len - 1);
  return g_variant_get_size (meta);
}

/* Handshake metadata is capped at 4096 bytes: an AUTH whose group list
 * makes it just fit is accepted, one byte more is refused. */
static void
test_handshake_meta_cap (void)
{
  g_autoptr(GPtrArray) groups = g_ptr_array_new_with_free_func (g_free);
  gsize name_len;
  Hostile h;

  hostile_setup (&h);

  /* Fill the group list until the AUTH metadata is exactly 4096 bytes:
   * 200-byte names, then one sized to land on the limit (each byte of a
   * name adds one to the size). */
  while (auth_meta_size (groups) + 210 <= TLSPYO_FRAME_MAX_META_HANDSHAKE)
    g_ptr_array_add (groups, g_strdup_printf ("g%03u-%0196d", groups->len, 0));
  for (name_len = 1;; name_len++)
    {
      gsize size;

      g_ptr_array_add (groups, g_strnfill (name_len, 'z'));
      size = auth_meta_size (groups);
      if (size == TLSPYO_FRAME_MAX_META_HANDSHAKE)
        break;
      g_assert_cmpuint (size, <, TLSPYO_FRAME_MAX_META_HANDSHAKE);
      g_ptr_array_remove_index (groups, groups->len - 1);
    }
  g_ptr_array_add (groups, NULL);

  /* Exactly at the limit: joins. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);

    raw_handshake (rc, (const char * const *) groups->pdata);
    g_assert_cmpuint (g_bytes_get_size (rc->auth), ==,
                      TLSPYO_FRAME_HEADER_SIZE + TLSPYO_FRAME_MAX_META_HANDSHAKE);
  }

  /* One byte over (a longer last name): refused before it is parsed. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    char **last = (char **) &groups->pdata[groups->len - 2];
    char *longer = g_strconcat (*last, "z", NULL);

    g_free (*last);
    *last = longer;
    raw_hello (rc, NULL);
    raw_read_challenge (rc, TLSPYO_TEST_PASSWORD);
    raw_send_auth (rc, (const char * const *) groups->pdata);
    g_assert_cmpuint (g_bytes_get_size (rc->auth), ==,
                      TLSPYO_FRAME_HEADER_SIZE + TLSPYO_FRAME_MAX_META_HANDSHAKE + 1);
    raw_expect_closed (rc);
    g_assert_true (g_queue_is_empty (&rc->frames));
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "4096");
  }

  /* A HELLO with a 5000-byte nonce: well-formed, but too big. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autofree guint8 *nonce = g_malloc0 (5000);
    g_autoptr(GBytes) sent = NULL;

    sent = raw_send_frame (rc, TLSPYO_FRAME_HELLO,
                           g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                          g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                     5000, 1)),
                           NULL, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "4096");
  }

  g_ptr_array_set_size (groups, 0);
  hostile_finish (&h);
}

static void
test_wrong_version (void)
{
  Hostile h;

  hostile_setup (&h);

  /* In the frame header. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);

    raw_send_header (rc, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION + 1, TLSPYO_FRAME_HELLO,
                     40, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "version");
  }

  /* In HELLO. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 0 };
    g_autoptr(GBytes) sent = NULL;

    sent = raw_send_frame (rc, TLSPYO_FRAME_HELLO,
                           g_variant_new ("(u@ay)", (guint32) 7,
                                          g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                     sizeof nonce, 1)),
                           NULL, 0);
    raw_expect_closed (rc);
    g_assert_true (g_queue_is_empty (&rc->frames));
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "version 7");
  }

  /* A nonce of the wrong size. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    guint8 nonce[TLSPYO_AUTH_NONCE_SIZE - 1] = { 0 };
    g_autoptr(GBytes) sent = NULL;

    sent = raw_send_frame (rc, TLSPYO_FRAME_HELLO,
                           g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                          g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                     sizeof nonce, 1)),
                           NULL, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "nonce");
  }

  /* Flags that are not defined. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    guint8 header[TLSPYO_FRAME_HEADER_SIZE];

    tlspyo_frame_write_header (header, TLSPYO_FRAME_HELLO, 40, 0);
    header[3] = 0x80;
    raw_send (rc, header, sizeof header);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "flags");
  }

  hostile_finish (&h);
}

static void
test_wrong_magic (void)
{
  static const char *speech[] = {
    "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "SSH-2.0-OpenSSH_9.2\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  /* a TLS ClientHello's start */
    "\0",
  };
  Hostile h;

  hostile_setup (&h);
  for (guint i = 0; i < G_N_ELEMENTS (speech); i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);

      raw_send (rc, speech[i], MAX (strlen (speech[i]), 1));
      raw_expect_closed (rc);
      g_assert_true (g_queue_is_empty (&rc->frames));
      expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "not a tlspyo-glib peer");
    }
  hostile_finish (&h);
}

/* A connection that sends nothing, or stops after HELLO, is dropped after
 * handshake-timeout (1 s here) with TIMED_OUT. */
static void
run_handshake_timeout (TlspyoSecurity security)
{
  g_autoptr(RawClient) silent = NULL;
  g_autoptr(RawClient) stalled = NULL;
  Hostile h;

  /* 1 s, scaled like every bound of the tests (under valgrind, legitimate
   * TLS handshakes take longer than that). */
  hostile_setup_full (&h, security, MAX (1, TLSPYO_TEST_TIMEOUT_MS / 10000));
  silent = raw_connect (h.f.port);
  if (security == TLSPYO_SECURITY_NONE)
    {
      RawFrame *challenge;

      stalled = raw_connect (h.f.port);
      raw_hello (stalled, NULL);
      challenge = raw_expect_frame (stalled, TLSPYO_FRAME_CHALLENGE);
      raw_frame_free (challenge);
    }

  expect_refusal_containing (&h, TLSPYO_ERROR_TIMED_OUT, "handshake");
  if (stalled != NULL)
    expect_refusal_containing (&h, TLSPYO_ERROR_TIMED_OUT, "handshake");
  raw_expect_closed (silent);
  if (stalled != NULL)
    raw_expect_closed (stalled);

  hostile_finish (&h);
}

static void
test_handshake_timeout_tcp (void)
{
  run_handshake_timeout (TLSPYO_SECURITY_NONE);
}

static void
test_handshake_timeout_tls (void)
{
  run_handshake_timeout (TLSPYO_SECURITY_TLS);
}

/* Garbage instead of a TLS handshake: refused at once, not at the
 * timeout. */
static void
test_tls_garbage (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (7);
  Hostile h;

  hostile_setup_full (&h, TLSPYO_SECURITY_TLS, LONG_HANDSHAKE_TIMEOUT_S);
  for (guint i = 0; i < 8; i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);
      g_autofree char *reason = NULL;

      if (i == 0)
        raw_hello (rc, NULL);  /* a plain-TCP endpoint */
      else
        send_random (rc, rand, FALSE);
      raw_expect_closed (rc);
      reason = expect_refusal (&h, TLSPYO_ERROR_PROTOCOL);
      g_assert_nonnull (strstr (reason, "TLS"));
    }
  hostile_finish (&h);
}

/* Malformed object bodies after authentication: the relay checks the
 * trailer and that the data fits the type, drops the sender with PROTOCOL,
 * and delivers nothing. */
static void
test_bad_object_body (void)
{
  static const struct {
    const char *body;
    gsize       len;
  } bodies[] = {
    { "ab", 2 },                          /* no NUL */
    { "abc\0", 4 },                       /* no type */
    { "abc\0(", 5 },                      /* incomplete type */
    { "abc\0ss", 6 },                     /* two types */
    { "abc\0*", 5 },                      /* not definite */
    { "abc\0a", 5 },                      /* incomplete */
    { "abc\0{vs}", 8 },                   /* a dict entry with a non-basic key */
    { "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 300 },  /* all NULs */
    { "\x01\x02\x03\0u", 5 },             /* 3 bytes for a 4-byte type */
    { "\x01\x02\x03\x04\x05\0(uu)", 10 }, /* 5 bytes for 8 */
  };
  Hostile h;

  hostile_setup (&h);
  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);

      raw_handshake (rc, GROUPS ("attackers"));
      raw_send_object (rc, "target", (const guint8 *) bodies[i].body, bodies[i].len);
      raw_expect_closed (rc);
      g_free (expect_refusal (&h, TLSPYO_ERROR_PROTOCOL));
    }
  hostile_finish (&h);
}

/* Hostile destinations and notifications after authentication. */
static void
test_bad_destinations (void)
{
  g_autoptr(GBytes) object = tlspyo_object_to_bytes (g_variant_new_string ("misdirected"));
  const char *bad_groups[] = { "", ("bad\x01" "control"), "\t" };
  Hostile h;

  hostile_setup (&h);

  for (guint i = 0; i < G_N_ELEMENTS (bad_groups); i++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);

      raw_handshake (rc, GROUPS ("attackers"));
      raw_send_object (rc, bad_groups[i], g_bytes_get_data (object, NULL),
                       g_bytes_get_size (object));
      raw_expect_closed (rc);
      expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "group");
    }

  /* A group name that is not UTF-8: the metadata is not a valid string,
   * so it fails before the group is even looked at. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GByteArray) out = g_byte_array_new ();
    GVariantBuilder builder;
    guint8 *at;

    raw_handshake (rc, GROUPS ("attackers"));
    g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
    g_variant_builder_add (&builder, "{si}", "PLACEHOLDER", -1);
    tlspyo_frame_append (out, TLSPYO_FRAME_OBJECT, g_variant_new ("(a{si})", &builder),
                         g_bytes_get_size (object));
    at = (guint8 *) find_bytes (out->data, out->len, "PLACEHOLDER", 11);
    g_assert_nonnull (at);
    at[0] = 0xff;
    at[1] = 0xfe;
    g_byte_array_append (out, g_bytes_get_data (object, NULL), g_bytes_get_size (object));
    raw_send (rc, out->data, out->len);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "metadata");
  }

  /* A count of 0. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GBytes) sent = NULL;
    GVariantBuilder builder;

    raw_handshake (rc, GROUPS ("attackers"));
    g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
    g_variant_builder_add (&builder, "{si}", "target", 0);
    sent = raw_send_frame (rc, TLSPYO_FRAME_OBJECT, g_variant_new ("(a{si})", &builder),
                           g_bytes_get_data (object, NULL), g_bytes_get_size (object));
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "count of 0");
  }

  /* NOTIFY for an invalid group name. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GBytes) sent = NULL;

    raw_handshake (rc, GROUPS ("attackers"));
    sent = raw_send_frame (rc, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "", 5), NULL, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "group");
  }

  /* NOTIFY for a group it is not in is ignored, not fatal; frames only a
   * relay sends are fatal. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    g_autoptr(GBytes) sent = NULL;
    RawFrame *ack;

    raw_handshake (rc, GROUPS ("attackers"));
    sent = raw_send_frame (rc, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "target", -1), NULL, 0);
    ack = raw_expect_frame (rc, TLSPYO_FRAME_ACK);
    raw_frame_free (ack);
    g_clear_pointer (&sent, g_bytes_unref);
    sent = raw_send_frame (rc, TLSPYO_FRAME_ACK, g_variant_new ("(t)", G_MAXUINT64), NULL, 0);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_PROTOCOL, "ACK");
  }

  hostile_finish (&h);
}

/* The relay forwards an object's bytes as they came, without parsing
 * them: a well-formed but strange body (not in normal form) reaches a raw
 * receiver byte for byte, and a real endpoint receives it without harm. */
static void
test_forward_as_is (void)
{
  /* An "s" whose data lacks its terminating NUL, and an "as" whose offset
   * points outside it: GVariant reads both as defaults, safely. */
  static const struct {
    const char *body;
    gsize       len;
    const char *type;
  } bodies[] = {
    { "abc\0s", 5, "s" },
    { "x\0\x09\0as", 6, "as" },
  };
  Hostile h;
  g_autoptr(RawClient) sender = NULL;
  g_autoptr(RawClient) receiver = NULL;

  hostile_setup (&h);
  receiver = raw_connect (h.f.port);
  raw_handshake (receiver, GROUPS ("target"));
  sender = raw_connect (h.f.port);
  raw_handshake (sender, GROUPS ("attackers"));

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      RawFrame *deliver;
      g_autoptr(GPtrArray) got = NULL;
      g_autoptr(GError) error = NULL;

      raw_send_object (sender, "target", (const guint8 *) bodies[i].body, bodies[i].len);
      deliver = raw_expect_frame (receiver, TLSPYO_FRAME_DELIVER);
      g_assert_cmpmem (g_bytes_get_data (deliver->body, NULL), g_bytes_get_size (deliver->body),
                       bodies[i].body, bodies[i].len);
      raw_frame_free (deliver);

      /* The legitimate receiver got it too, as a value of the right type. */
      got = tlspyo_endpoint_pop (h.receiver, 1, TLSPYO_TEST_TIMEOUT_MS, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (got->len, ==, 1);
      g_assert_cmpstr (g_variant_get_type_string (got->pdata[0]), ==, bodies[i].type);
    }

  /* The latest broadcast of "target" is now that strange object: a late
   * joiner gets it first, and is not harmed either. */
  {
    TlspyoEndpoint *late = legit_endpoint (&h, "target");
    g_autoptr(GPtrArray) got = NULL;
    g_autoptr(GError) error = NULL;

    got = tlspyo_endpoint_pop (late, 1, TLSPYO_TEST_TIMEOUT_MS, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (got->len, ==, 1);
    g_assert_cmpstr (g_variant_get_type_string (got->pdata[0]), ==, "as");
    tlspyo_test_broadcast_string (h.sender, "reset", "target");
    tlspyo_test_expect_string (late, "reset");
    tlspyo_test_expect_string (h.receiver, "reset");
  }

  /* Both raw clients leave cleanly: no refusal. */
  g_clear_pointer (&sender, raw_free);
  g_clear_pointer (&receiver, raw_free);
  hostile_finish_retained (&h, "reset");
}

/* Authentication */

#define REFUSAL_WARNINGS "*refused this endpoint*"

/* The endpoint's wait_connected fails with AUTHENTICATION, and the relay
 * announces it. */
static void
test_wrong_password (void)
{
  Hostile h;
  TlspyoEndpoint *ep;
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  hostile_setup (&h);
  ep = tlspyo_test_endpoint_new (&h.f, "target");
  /* One attempt in this test: a retry stopped halfway would be one more
   * refusal to account for. */
  g_object_set (ep, "password", "not the password",
                "reconnect-initial-delay", 60.0, "reconnect-max-delay", 60.0, NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_AUTHENTICATION);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  expect_refusal_containing (&h, TLSPYO_ERROR_AUTHENTICATION, "password");
  tlspyo_endpoint_stop (ep);

  /* A raw client with a wrong proof reads the refusal before the close. */
  {
    g_autoptr(RawClient) rc = raw_connect (h.f.port);
    RawFrame *refused;
    guint32 code;
    const char *reason;

    raw_hello (rc, NULL);
    raw_read_challenge (rc, "not the password");
    raw_send_auth (rc, GROUPS ("target"));
    refused = raw_expect_frame (rc, TLSPYO_FRAME_REFUSED);
    g_variant_get (refused->meta, "(u&s)", &code, &reason);
    g_assert_cmpuint (code, ==, TLSPYO_ERROR_AUTHENTICATION);
    g_assert_cmpstr (reason, !=, "");
    raw_frame_free (refused);
    raw_expect_closed (rc);
    expect_refusal_containing (&h, TLSPYO_ERROR_AUTHENTICATION, "password");
  }

  hostile_finish (&h);
}

/* A recorded AUTH replayed into a new session: refused, because the relay's
 * nonce differs, even when the HELLO (and its nonce) is replayed too. */
static void
test_replay (void)
{
  Hostile h;
  g_autoptr(GBytes) hello = NULL;
  g_autoptr(GBytes) auth = NULL;

  hostile_setup (&h);

  {
    g_autoptr(RawClient) original = raw_connect (h.f.port);

    raw_handshake (original, GROUPS ("target"));
    hello = g_bytes_ref (original->hello);
    auth = g_bytes_ref (original->auth);
  }

  for (guint replay_hello = 0; replay_hello < 2; replay_hello++)
    {
      g_autoptr(RawClient) rc = raw_connect (h.f.port);
      RawFrame *frame;
      guint32 code;

      if (replay_hello)
        raw_send_bytes (rc, hello);
      else
        raw_hello (rc, NULL);
      frame = raw_expect_frame (rc, TLSPYO_FRAME_CHALLENGE);
      raw_frame_free (frame);
      raw_send_bytes (rc, auth);
      frame = raw_expect_frame (rc, TLSPYO_FRAME_REFUSED);
      g_variant_get (frame->meta, "(u&s)", &code, NULL);
      g_assert_cmpuint (code, ==, TLSPYO_ERROR_AUTHENTICATION);
      raw_frame_free (frame);
      raw_expect_closed (rc);
      g_free (expect_refusal (&h, TLSPYO_ERROR_AUTHENTICATION));
    }

  hostile_finish (&h);
}

/* A fake relay: a thread that accepts endpoints and speaks the protocol
 * without knowing the password (or knowing it, to test the endpoint's
 * parsing after authentication), recording everything it receives. */

typedef enum {
  FAKE_WELCOME_RANDOM,   /* WELCOME with a random proof */
  FAKE_WELCOME_REFLECT,  /* WELCOME with the endpoint's own proof */
  FAKE_LOW_ITERATIONS,   /* CHALLENGE with too few PBKDF2 rounds */
  FAKE_GARBAGE,          /* random bytes instead of CHALLENGE */
  FAKE_HUGE_CHALLENGE,   /* a CHALLENGE header announcing 4 GiB */
  FAKE_HUGE_DELIVER,     /* real auth, then a DELIVER announcing 2^63 bytes */
  FAKE_BAD_DELIVER,      /* real auth, then a DELIVER whose object does not fit its type */
  FAKE_BAD_ACK,          /* real auth, then an ACK for frames never sent */
} FakeMode;

typedef struct {
  FakeMode         mode;
  GSocketListener *listener;
  guint            port;
  GCancellable    *cancellable;
  GThread         *thread;
  GMutex           mutex;
  guint            n_sessions;
  guint            n_finished;
  guint            counts[TLSPYO_FRAME_TYPE_LAST + 1];
  GByteArray      *received;
} FakeRelay;

typedef struct {
  FakeRelay          *fake;
  GSocket            *socket;
  TlspyoFrameDecoder *decoder;
  GQueue              frames;
} FakeSession;

static gboolean
fake_collect_cb (const TlspyoFrame *frame,
                 gpointer           user_data)
{
  FakeSession *s = user_data;
  RawFrame *copy = g_new0 (RawFrame, 1);

  copy->type = frame->type;
  copy->meta = g_variant_ref (frame->meta);
  copy->body = frame->body ? g_bytes_ref (frame->body) : NULL;
  g_queue_push_tail (&s->frames, copy);
  g_mutex_lock (&s->fake->mutex);
  s->fake->counts[frame->type]++;
  g_mutex_unlock (&s->fake->mutex);
  return TRUE;
}

/* Reads once; FALSE when the session is over (closed, cancelled, garbage). */
static gboolean
fake_read (FakeSession *s)
{
  guint8 buffer[16 * 1024];
  g_autoptr(GError) error = NULL;
  gssize n = g_socket_receive (s->socket, (char *) buffer, sizeof buffer, s->fake->cancellable,
                               &error);

  if (n <= 0)
    return FALSE;
  g_mutex_lock (&s->fake->mutex);
  g_byte_array_append (s->fake->received, buffer, n);
  g_mutex_unlock (&s->fake->mutex);
  return tlspyo_frame_decoder_feed (s->decoder, buffer, n, fake_collect_cb, s, NULL);
}

static RawFrame *
fake_next (FakeSession *s)
{
  while (g_queue_is_empty (&s->frames))
    if (!fake_read (s))
      return NULL;
  return g_queue_pop_head (&s->frames);
}

static gboolean
socket_send_all (GSocket      *socket,
                 const void   *data,
                 gsize         len,
                 GCancellable *cancellable)
{
  const char *p = data;

  while (len > 0)
    {
      gssize n = g_socket_send (socket, p, len, cancellable, NULL);

      if (n <= 0)
        return FALSE;
      p += n;
      len -= n;
    }
  return TRUE;
}

static void
fake_send (FakeSession *s,
           GBytes      *bytes)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);

  socket_send_all (s->socket, data, len, s->fake->cancellable);
}

static void
fake_send_frame (FakeSession     *s,
                 TlspyoFrameType  type,
                 GVariant        *meta)
{
  g_autoptr(GBytes) bytes = tlspyo_frame_encode (type, meta, 0);

  fake_send (s, bytes);
}

static GVariant *
bytes_variant (const guint8 *data,
               gsize         len)
{
  return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1);
}

static void
fake_session (FakeRelay *fake,
              GSocket   *socket)
{
  FakeSession s = { fake, socket, NULL, G_QUEUE_INIT };
  guint8 relay_nonce[TLSPYO_AUTH_NONCE_SIZE], salt[TLSPYO_AUTH_SALT_SIZE];
  guint8 key[TLSPYO_AUTH_KEY_SIZE], proof[TLSPYO_AUTH_PROOF_SIZE];
  guint8 endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint iterations = fake->mode == FAKE_LOW_ITERATIONS ? TLSPYO_AUTH_MIN_ITERATIONS - 1
                                                       : TLSPYO_AUTH_MIN_ITERATIONS;
  RawFrame *frame;

  s.decoder = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 512 * MiB, TLSPYO_FRAME_MASK_ALL);
  tlspyo_auth_random (relay_nonce, sizeof relay_nonce);
  tlspyo_auth_random (salt, sizeof salt);

  frame = fake_next (&s);
  if (frame == NULL || frame->type != TLSPYO_FRAME_HELLO)
    goto drain;
  {
    g_autoptr(GVariant) nonce = g_variant_get_child_value (frame->meta, 1);
    gsize len;
    const guint8 *data = g_variant_get_fixed_array (nonce, &len, 1);

    g_assert_cmpuint (len, ==, sizeof endpoint_nonce);
    memcpy (endpoint_nonce, data, len);
  }
  raw_frame_free (frame);

  if (fake->mode == FAKE_GARBAGE)
    {
      guint8 garbage[512];

      tlspyo_auth_random (garbage, sizeof garbage);
      socket_send_all (socket, garbage, sizeof garbage, fake->cancellable);
      goto drain;
    }
  if (fake->mode == FAKE_HUGE_CHALLENGE)
    {
      guint8 header[TLSPYO_FRAME_HEADER_SIZE];

      tlspyo_frame_write_header (header, TLSPYO_FRAME_CHALLENGE, G_MAXUINT32, 0);
      socket_send_all (socket, header, sizeof header, fake->cancellable);
      goto drain;
    }

  fake_send_frame (&s, TLSPYO_FRAME_CHALLENGE,
                   g_variant_new ("(@ay@ayu)", bytes_variant (relay_nonce, sizeof relay_nonce),
                                  bytes_variant (salt, sizeof salt), iterations));
  frame = fake_next (&s);
  if (frame == NULL || frame->type != TLSPYO_FRAME_AUTH)
    goto drain;

  switch (fake->mode)
    {
    case FAKE_WELCOME_RANDOM:
      tlspyo_auth_random (proof, sizeof proof);
      break;
    case FAKE_WELCOME_REFLECT:
      {
        g_autoptr(GVariant) p = g_variant_get_child_value (frame->meta, 0);
        gsize len;
        const guint8 *data = g_variant_get_fixed_array (p, &len, 1);

        g_assert_cmpuint (len, ==, sizeof proof);
        memcpy (proof, data, len);
      }
      break;
    default:
      /* This fake knows the password: the endpoint accepts it. */
      g_assert_true (tlspyo_auth_derive_key (TLSPYO_TEST_PASSWORD, salt, sizeof salt, iterations,
                                             key, NULL));
      tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_RELAY, endpoint_nonce, relay_nonce, proof);
      break;
    }
  raw_frame_free (frame);
  fake_send_frame (&s, TLSPYO_FRAME_WELCOME,
                   g_variant_new ("(@ay)", bytes_variant (proof, sizeof proof)));

  switch (fake->mode)
    {
    case FAKE_HUGE_DELIVER:
      {
        g_autoptr(GByteArray) out = g_byte_array_new ();

        tlspyo_frame_append (out, TLSPYO_FRAME_DELIVER,
                             g_variant_new ("(stt)", "g", (guint64) 1, (guint64) 1), 2);
        /* Patch the body length to 2^63 once encoded. */
        for (guint i = 0; i < 8; i++)
          out->data[8 + i] = i == 7 ? 0x80 : 0;
        socket_send_all (socket, out->data, out->len, fake->cancellable);
      }
      break;
    case FAKE_BAD_DELIVER:
      {
        g_autoptr(GByteArray) out = g_byte_array_new ();

        tlspyo_frame_append (out, TLSPYO_FRAME_DELIVER,
                             g_variant_new ("(stt)", "g", (guint64) 1, (guint64) 1), 5);
        g_byte_array_append (out, (const guint8 *) "\x01\x02\x03\0u", 5);
        socket_send_all (socket, out->data, out->len, fake->cancellable);
      }
      break;
    case FAKE_BAD_ACK:
      fake_send_frame (&s, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 1000));
      break;
    default:
      break;
    }

drain:
  /* Record everything until the endpoint closes (or the test ends). */
  while (fake_read (&s))
    ;
  g_queue_clear_full (&s.frames, raw_frame_free);
  tlspyo_frame_decoder_free (s.decoder);
}

static gpointer
fake_relay_thread (gpointer data)
{
  FakeRelay *fake = data;

  for (;;)
    {
      g_autoptr(GSocketConnection) conn = NULL;
      GSocket *socket;

      conn = g_socket_listener_accept (fake->listener, NULL, fake->cancellable, NULL);
      if (conn == NULL)
        break;
      socket = g_socket_connection_get_socket (conn);
      g_socket_set_timeout (socket, 3 * TLSPYO_TEST_TIMEOUT_MS / 1000);
      g_mutex_lock (&fake->mutex);
      fake->n_sessions++;
      g_mutex_unlock (&fake->mutex);
      fake_session (fake, socket);
      g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
      g_mutex_lock (&fake->mutex);
      fake->n_finished++;
      g_mutex_unlock (&fake->mutex);
    }
  return NULL;
}

static FakeRelay *
fake_relay_start (FakeMode mode)
{
  FakeRelay *fake = g_new0 (FakeRelay, 1);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) effective = NULL;
  g_autoptr(GError) error = NULL;

  fake->mode = mode;
  fake->listener = g_socket_listener_new ();
  g_socket_listener_add_address (fake->listener, address, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &effective, &error);
  g_assert_no_error (error);
  fake->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  fake->cancellable = g_cancellable_new ();
  fake->received = g_byte_array_new ();
  g_mutex_init (&fake->mutex);
  fake->thread = g_thread_new ("fake-relay", fake_relay_thread, fake);
  return fake;
}

static gboolean
fake_sessions_over (gpointer data)
{
  FakeRelay *fake = data;
  gboolean over;

  g_mutex_lock (&fake->mutex);
  over = fake->n_sessions > 0 && fake->n_finished == fake->n_sessions;
  g_mutex_unlock (&fake->mutex);
  return over;
}

/* Waits for the sessions to end (the endpoint must be stopped), then stops. */
static void
fake_relay_stop (FakeRelay *fake)
{
  g_assert_true (tlspyo_test_wait_until (fake_sessions_over, fake));
  g_cancellable_cancel (fake->cancellable);
  g_thread_join (fake->thread);
  g_socket_listener_close (fake->listener);
}

static void
fake_relay_free (FakeRelay *fake)
{
  g_object_unref (fake->listener);
  g_object_unref (fake->cancellable);
  g_byte_array_unref (fake->received);
  g_mutex_clear (&fake->mutex);
  g_free (fake);
}

static gboolean
contains (const GByteArray *haystack,
          const void       *needle,
          gsize             len)
{
  return find_bytes (haystack->data, haystack->len, needle, len) != NULL;
}

static TlspyoEndpoint *
fake_endpoint (FakeRelay *fake)
{
  const char *groups[] = { "g", NULL };

  return g_object_new (TLSPYO_TYPE_ENDPOINT,
                       "host", "127.0.0.1",
                       "port", fake->port,
                       "password", TLSPYO_TEST_PASSWORD,
                       "groups", groups,
                       "security", TLSPYO_SECURITY_NONE,
                       "reconnect-initial-delay", 0.05,
                       "reconnect-max-delay", 0.5,
                       NULL);
}

/* An endpoint facing a fake relay fails with @code, and the fake never
 * receives an object, though the application broadcast one before
 * starting; nor does the password ever reach it. */
static void
run_fake_relay (FakeMode     mode,
                TlspyoError  code,
                gboolean     expect_auth)
{
  FakeRelay *fake = fake_relay_start (mode);
  g_autoptr(TlspyoEndpoint) ep = fake_endpoint (fake);
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_broadcast (ep, g_variant_new_string ("for the real relay only"),
                                            "g", &error));
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_test_message ("endpoint failed with: %s", error->message);
  g_assert_error (error, TLSPYO_ERROR, (gint) code);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  tlspyo_endpoint_stop (ep);
  fake_relay_stop (fake);

  g_assert_cmpuint (fake->counts[TLSPYO_FRAME_HELLO], >=, 1);
  if (expect_auth)
    g_assert_cmpuint (fake->counts[TLSPYO_FRAME_AUTH], >=, 1);
  else
    g_assert_cmpuint (fake->counts[TLSPYO_FRAME_AUTH], ==, 0);
  g_assert_cmpuint (fake->counts[TLSPYO_FRAME_OBJECT], ==, 0);
  g_assert_cmpuint (fake->counts[TLSPYO_FRAME_NOTIFY], ==, 0);
  g_assert_false (contains (fake->received, "for the real relay only", 23));
  g_assert_false (contains (fake->received, TLSPYO_TEST_PASSWORD, strlen (TLSPYO_TEST_PASSWORD)));
  fake_relay_free (fake);
}

#define FAKE_WARNINGS "*127.0.0.1*"

static void
test_fake_relay_random_proof (void)
{
  tlspyo_test_log_tolerate (FAKE_WARNINGS);
  tlspyo_test_log_tolerate ("Endpoint stopped with * objects*");
  run_fake_relay (FAKE_WELCOME_RANDOM, TLSPYO_ERROR_AUTHENTICATION, TRUE);
}

static void
test_fake_relay_reflected_proof (void)
{
  tlspyo_test_log_tolerate (FAKE_WARNINGS);
  tlspyo_test_log_tolerate ("Endpoint stopped with * objects*");
  run_fake_relay (FAKE_WELCOME_REFLECT, TLSPYO_ERROR_AUTHENTICATION, TRUE);
}

static void
test_fake_relay_low_iterations (void)
{
  tlspyo_test_log_tolerate (FAKE_WARNINGS);
  tlspyo_test_log_tolerate ("Endpoint stopped with * objects*");
  /* Refused before the endpoint gives out a proof to guess from. */
  run_fake_relay (FAKE_LOW_ITERATIONS, TLSPYO_ERROR_PROTOCOL, FALSE);
}

static void
test_fake_relay_garbage (void)
{
  tlspyo_test_log_tolerate (FAKE_WARNINGS);
  tlspyo_test_log_tolerate ("Endpoint stopped with * objects*");
  run_fake_relay (FAKE_GARBAGE, TLSPYO_ERROR_PROTOCOL, FALSE);
  run_fake_relay (FAKE_HUGE_CHALLENGE, TLSPYO_ERROR_PROTOCOL, FALSE);
}

/* A relay that knows the password but then sends hostile frames: the
 * endpoint drops that connection with PROTOCOL, says why, delivers nothing,
 * and does not crash. */

static gboolean
warning_logged (gpointer pattern)
{
  return tlspyo_test_log_count (pattern) > 0;
}

static void
run_fake_relay_after_auth (FakeMode    mode,
                           const char *warning)
{
  FakeRelay *fake = fake_relay_start (mode);
  g_autoptr(TlspyoEndpoint) ep = fake_endpoint (fake);
  g_autoptr(GError) error = NULL;

  /* Count only this run's warnings. */
  tlspyo_test_log_reset ();
  tlspyo_test_log_tolerate (FAKE_WARNINGS);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  /* The fake's sockets time out after longer than this wait, so only the
   * endpoint can end a session within it. */
  if (!tlspyo_test_wait_until (warning_logged, (gpointer) warning))
    g_error ("The endpoint did not drop the hostile relay with “%s”", warning);
  tlspyo_endpoint_stop (ep);
  fake_relay_stop (fake);

  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (ep), ==, 0);
  g_assert_cmpuint (fake->counts[TLSPYO_FRAME_AUTH], >=, 1);
  g_assert_false (contains (fake->received, TLSPYO_TEST_PASSWORD, strlen (TLSPYO_TEST_PASSWORD)));
  fake_relay_free (fake);
}

static void
test_fake_relay_after_auth (void)
{
  run_fake_relay_after_auth (FAKE_HUGE_DELIVER, "*exceeds the limit*");
  run_fake_relay_after_auth (FAKE_BAD_DELIVER, "*malformed*");
  run_fake_relay_after_auth (FAKE_BAD_ACK, "*acknowledged 1000 frames*");
}

/* A recording proxy between an endpoint and the real relay: all bytes both
 * ways are kept, and neither the password nor the key derived from it is
 * among them. */

typedef struct {
  GSocketListener *listener;
  guint            port;
  guint            upstream_port;
  GCancellable    *cancellable;
  GThread         *thread;
  GByteArray      *to_relay;
  GByteArray      *to_endpoint;
} Proxy;

static gboolean
proxy_pump (GSocket      *from,
            GSocket      *to,
            GByteArray   *record,
            GCancellable *cancellable)
{
  char buffer[64 * 1024];
  gssize n = g_socket_receive (from, buffer, sizeof buffer, cancellable, NULL);

  if (n <= 0)
    return FALSE;
  g_byte_array_append (record, (const guint8 *) buffer, n);
  return socket_send_all (to, buffer, n, cancellable);
}

static gpointer
proxy_thread (gpointer data)
{
  Proxy *proxy = data;
  g_autoptr(GSocketConnection) down = NULL;
  g_autoptr(GSocketConnection) up = NULL;
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  GPollFD fds[3];

  down = g_socket_listener_accept (proxy->listener, NULL, proxy->cancellable, NULL);
  if (down == NULL)
    return NULL;
  g_socket_client_set_enable_proxy (client, FALSE);
  up = g_socket_client_connect_to_host (client, "127.0.0.1", proxy->upstream_port,
                                        proxy->cancellable, NULL);
  if (up == NULL)
    return NULL;

  fds[0].fd = g_socket_get_fd (g_socket_connection_get_socket (down));
  fds[1].fd = g_socket_get_fd (g_socket_connection_get_socket (up));
  fds[0].events = fds[1].events = G_IO_IN | G_IO_HUP | G_IO_ERR;
  g_cancellable_make_pollfd (proxy->cancellable, &fds[2]);

  for (;;)
    {
      fds[0].revents = fds[1].revents = fds[2].revents = 0;
      if (g_poll (fds, 3, TLSPYO_TEST_TIMEOUT_MS) <= 0 || fds[2].revents != 0)
        break;
      if (fds[0].revents != 0 &&
          !proxy_pump (g_socket_connection_get_socket (down), g_socket_connection_get_socket (up),
                       proxy->to_relay, proxy->cancellable))
        break;
      if (fds[1].revents != 0 &&
          !proxy_pump (g_socket_connection_get_socket (up), g_socket_connection_get_socket (down),
                       proxy->to_endpoint, proxy->cancellable))
        break;
    }
  g_cancellable_release_fd (proxy->cancellable);
  return NULL;
}

static void
test_password_not_on_wire (void)
{
  TlspyoTestFixture f = { 0 };
  Proxy proxy = { 0 };
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) effective = NULL;
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;
  guint8 key[TLSPYO_AUTH_KEY_SIZE];
  guint8 relay_nonce[TLSPYO_AUTH_NONCE_SIZE];

  tlspyo_test_fixture_setup (&f, TLSPYO_SECURITY_NONE);
  tlspyo_test_fixture_start (&f);

  proxy.listener = g_socket_listener_new ();
  g_socket_listener_add_address (proxy.listener, address, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &effective, &error);
  g_assert_no_error (error);
  proxy.port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  proxy.upstream_port = f.port;
  proxy.cancellable = g_cancellable_new ();
  proxy.to_relay = g_byte_array_new ();
  proxy.to_endpoint = g_byte_array_new ();
  proxy.thread = g_thread_new ("recording-proxy", proxy_thread, &proxy);

  /* A whole session through the proxy: connect, send, receive, leave. */
  f.port = proxy.port;
  ep = tlspyo_test_endpoint_start (&f, "g");
  tlspyo_test_broadcast_string (ep, "a payload that must be on the wire", "g");
  tlspyo_test_expect_string (ep, "a payload that must be on the wire");
  g_assert_true (tlspyo_endpoint_flush (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  tlspyo_endpoint_stop (ep);

  g_cancellable_cancel (proxy.cancellable);
  g_thread_join (proxy.thread);

  /* The recording is real: it holds the payload both ways. */
  g_assert_true (contains (proxy.to_relay, "a payload that must be on the wire", 34));
  g_assert_true (contains (proxy.to_endpoint, "a payload that must be on the wire", 34));

  g_assert_false (contains (proxy.to_relay, TLSPYO_TEST_PASSWORD, strlen (TLSPYO_TEST_PASSWORD)));
  g_assert_false (contains (proxy.to_endpoint, TLSPYO_TEST_PASSWORD,
                            strlen (TLSPYO_TEST_PASSWORD)));

  /* Nor the key: read the CHALLENGE back from the recording, derive. */
  {
    g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 16 * MiB,
                                                                   TLSPYO_FRAME_MASK_ALL);
    RawClient collector = { 0 };
    RawFrame *challenge;
    g_autoptr(GVariant) nonce = NULL;
    g_autoptr(GVariant) salt = NULL;
    const guint8 *salt_data;
    gsize salt_len, nonce_len;
    guint32 iterations;

    g_queue_init (&collector.frames);
    g_assert_true (tlspyo_frame_decoder_feed (dec, proxy.to_endpoint->data, proxy.to_endpoint->len,
                                              collect_frame_cb, &collector, &error));
    challenge = g_queue_pop_head (&collector.frames);
    g_assert_cmpint (challenge->type, ==, TLSPYO_FRAME_CHALLENGE);
    g_variant_get (challenge->meta, "(@ay@ayu)", &nonce, &salt, &iterations);
    memcpy (relay_nonce, g_variant_get_fixed_array (nonce, &nonce_len, 1), sizeof relay_nonce);
    salt_data = g_variant_get_fixed_array (salt, &salt_len, 1);
    g_assert_true (tlspyo_auth_derive_key (TLSPYO_TEST_PASSWORD, salt_data, salt_len, iterations,
                                           key, NULL));
    raw_frame_free (challenge);
    g_queue_clear_full (&collector.frames, raw_frame_free);
  }
  g_assert_false (contains (proxy.to_relay, key, sizeof key));
  g_assert_false (contains (proxy.to_endpoint, key, sizeof key));
  g_assert_false (contains (proxy.to_relay, key, 8));
  g_assert_false (contains (proxy.to_endpoint, key, 8));

  g_socket_listener_close (proxy.listener);
  g_object_unref (proxy.listener);
  g_object_unref (proxy.cancellable);
  g_byte_array_unref (proxy.to_relay);
  g_byte_array_unref (proxy.to_endpoint);
  tlspyo_test_fixture_teardown (&f);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  g_test_add_func ("/hostile/random-bytes", test_random_bytes);
  g_test_add_func ("/hostile/random-frames", test_random_frames);
  g_test_add_func ("/hostile/random-after-auth", test_random_after_auth);
  g_test_add_func ("/hostile/huge-lengths/handshake", test_huge_lengths_handshake);
  g_test_add_func ("/hostile/huge-lengths/joined", test_huge_lengths_joined);
  g_test_add_func ("/hostile/object-too-large", test_object_too_large);
  g_test_add_func ("/hostile/truncated", test_truncated);
  g_test_add_func ("/hostile/frames-before-auth", test_frames_before_auth);
  g_test_add_func ("/hostile/handshake-meta-cap", test_handshake_meta_cap);
  g_test_add_func ("/hostile/wrong-version", test_wrong_version);
  g_test_add_func ("/hostile/wrong-magic", test_wrong_magic);
  g_test_add_func ("/hostile/handshake-timeout/tcp", test_handshake_timeout_tcp);
  g_test_add_func ("/hostile/handshake-timeout/tls", test_handshake_timeout_tls);
  g_test_add_func ("/hostile/tls-garbage", test_tls_garbage);
  g_test_add_func ("/hostile/bad-object-body", test_bad_object_body);
  g_test_add_func ("/hostile/bad-destinations", test_bad_destinations);
  g_test_add_func ("/hostile/forward-as-is", test_forward_as_is);
  g_test_add_func ("/hostile/auth/wrong-password", test_wrong_password);
  g_test_add_func ("/hostile/auth/replay", test_replay);
  g_test_add_func ("/hostile/auth/fake-relay/random-proof", test_fake_relay_random_proof);
  g_test_add_func ("/hostile/auth/fake-relay/reflected-proof", test_fake_relay_reflected_proof);
  g_test_add_func ("/hostile/auth/fake-relay/low-iterations", test_fake_relay_low_iterations);
  g_test_add_func ("/hostile/auth/fake-relay/garbage", test_fake_relay_garbage);
  g_test_add_func ("/hostile/auth/fake-relay/after-auth", test_fake_relay_after_auth);
  g_test_add_func ("/hostile/auth/password-not-on-wire", test_password_not_on_wire);
  return g_test_run ();
}
