/* SPDX-License-Identifier: MIT */
/* The relay's per-connection state machine (handshake, authentication,
 * then the joined state), fed bytes through a pair of pipes: no socket and
 * no TLS, so that the fuzzer sees only the protocol. The harness can play
 * a legitimate endpoint for the first steps, so that the fuzzer reaches
 * every state:
 *
 *   byte 0 & 3 = 0: the rest of the input as-is, from the first byte;
 *                1: a valid HELLO first, then the rest;
 *                2: a valid HELLO and AUTH (right proof), then the rest;
 *                3: a valid HELLO and an AUTH with a wrong proof, then the rest;
 *   byte 0 >> 2 & 3: the groups AUTH asks for (modes 2 and 3);
 *   byte 0 >> 4 & 3: who the harness is: 0 or 3 the shared password, 1 the
 *                named user "alice" (who may join "a" and "b", broadcast
 *                to "a" and produce into "c"), 2 a user the relay does not
 *                know.
 *
 * Checks: the relay answers only with well-formed frames, and objects
 * endpoints accept; it ends every connection once its input ends (a stall
 * aborts); and it forgets the connection afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>

#include "fuzz-common.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-relay-private.h"

#define PASSWORD   "fuzz password"
#define ALICE_PASSWORD "alice's password"
#define MAX_OBJECT (64 * 1024)
#define STALL_MS   10000

static TlspyoRelay *relay;

/* Salts are fixed while the relay runs: derive each key once. */
typedef struct {
  guint8  salt[TLSPYO_AUTH_SALT_SIZE];
  gsize   salt_len;
  guint   rounds;
  guint8  key[TLSPYO_AUTH_KEY_SIZE];
} CachedKey;

static CachedKey cached[3];

typedef struct {
  TlspyoFrameType  type;
  GVariant        *meta;
} Received;

typedef struct {
  int                 to_relay;
  int                 from_relay;
  TlspyoFrameDecoder *dec;
  GQueue              frames;  /* of Received */
  gboolean            eof;
  gboolean            write_closed;
} Session;

static void
received_free (gpointer data)
{
  Received *r = data;

  g_variant_unref (r->meta);
  g_free (r);
}

static gboolean
collect_cb (const TlspyoFrame *frame,
            gpointer           user_data)
{
  Session *s = user_data;
  Received *r = g_new0 (Received, 1);

  if (frame->body != NULL)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) object = tlspyo_object_from_body (frame->body, &error);

      if (object == NULL)
        g_error ("the relay forwarded an object endpoints reject: %s", error->message);
    }
  r->type = frame->type;
  r->meta = g_variant_ref (frame->meta);
  g_queue_push_tail (&s->frames, r);
  return TRUE;
}

static void
session_read (Session *s)
{
  guint8 buffer[64 * 1024];
  gssize n = read (s->from_relay, buffer, sizeof buffer);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0)
    {
      s->eof = TRUE;
      return;
    }
  if (!tlspyo_frame_decoder_feed (s->dec, buffer, n, collect_cb, s, NULL))
    g_error ("the relay sent a malformed frame");
}

/* Writes @data (dropped once the relay stopped reading for good) while
 * reading what the relay sends, so neither side can block the other. */
static void
session_write (Session      *s,
               const guint8 *data,
               gsize         len)
{
  while (len > 0 && !s->write_closed)
    {
      struct pollfd fds[2] = {
        { s->to_relay, POLLOUT, 0 },
        { s->from_relay, s->eof ? 0 : POLLIN, 0 },
      };
      int n = poll (fds, s->eof ? 1 : 2, STALL_MS);

      if (n == 0)
        g_error ("the relay neither read nor wrote for %d ms", STALL_MS);
      if (n < 0)
        continue;
      if (fds[1].revents != 0)
        session_read (s);
      if (fds[0].revents & (POLLERR | POLLHUP))
        s->write_closed = TRUE;
      else if (fds[0].revents & POLLOUT)
        {
          gssize w = write (s->to_relay, data, MIN (len, 65536));

          if (w < 0 && errno == EPIPE)
            s->write_closed = TRUE;
          else if (w > 0)
            {
              data += w;
              len -= w;
            }
        }
    }
}

static void
session_send_frame (Session         *s,
                    TlspyoFrameType  type,
                    GVariant        *meta)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();

  tlspyo_frame_append (out, type, meta, 0);
  session_write (s, out->data, out->len);
}

/* The next frame of @type (others are dropped), or NULL at the end. */
static Received *
session_expect (Session         *s,
                TlspyoFrameType  type)
{
  for (;;)
    {
      Received *r;

      while ((r = g_queue_pop_head (&s->frames)) != NULL)
        {
          if (r->type == type)
            return r;
          received_free (r);
        }
      if (s->eof)
        return NULL;
      {
        struct pollfd fd = { s->from_relay, POLLIN, 0 };

        if (poll (&fd, 1, STALL_MS) == 0)
          g_error ("the relay did not answer within %d ms", STALL_MS);
      }
      session_read (s);
    }
}

static const guint8 *
key_for (guint         who,
         const guint8 *salt,
         gsize         salt_len,
         guint         rounds)
{
  CachedKey *c = &cached[who];
  const char *password = who == 1 ? ALICE_PASSWORD : PASSWORD;

  g_assert_cmpuint (salt_len, <=, sizeof c->salt);
  if (salt_len != c->salt_len || rounds != c->rounds || memcmp (salt, c->salt, salt_len) != 0)
    {
      g_assert_true (tlspyo_auth_derive_key (password, salt, salt_len, rounds, c->key, NULL));
      memcpy (c->salt, salt, salt_len);
      c->salt_len = salt_len;
      c->rounds = rounds;
    }
  return c->key;
}

static void
handshake (Session      *s,
           guint         mode,
           guint         groups_choice,
           guint         who)
{
  static const char * const group_sets[][3] = {
    { "a", NULL }, { "a", "b", NULL }, { "b", "c", NULL }, { "undeclared", NULL },
  };
  guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 0 };
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE];
  g_autoptr(GVariant) relay_nonce = NULL;
  g_autoptr(GVariant) salt = NULL;
  const guint8 *salt_data, *relay_nonce_data;
  gsize salt_len, relay_nonce_len;
  guint32 rounds;
  Received *challenge;

  if (who == 1 || who == 2)
    session_send_frame (s, TLSPYO_FRAME_HELLO_USER,
                        g_variant_new ("(u@ays)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                  sizeof nonce, 1),
                                       who == 1 ? "alice" : "mallory"));
  else
    session_send_frame (s, TLSPYO_FRAME_HELLO,
                        g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                  sizeof nonce, 1)));
  if (mode < 2)
    return;

  challenge = session_expect (s, TLSPYO_FRAME_CHALLENGE);
  g_assert_nonnull (challenge);
  g_variant_get (challenge->meta, "(@ay@ayu)", &relay_nonce, &salt, &rounds);
  received_free (challenge);
  relay_nonce_data = g_variant_get_fixed_array (relay_nonce, &relay_nonce_len, 1);
  salt_data = g_variant_get_fixed_array (salt, &salt_len, 1);
  g_assert_cmpuint (relay_nonce_len, ==, TLSPYO_AUTH_NONCE_SIZE);
  tlspyo_auth_proof (key_for (who, salt_data, salt_len, rounds), TLSPYO_AUTH_ROLE_ENDPOINT,
                     nonce, relay_nonce_data, proof);
  if (mode == 3)
    proof[0] ^= 1;
  session_send_frame (s, TLSPYO_FRAME_AUTH,
                      g_variant_new ("(@ay^as)",
                                     g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                                sizeof proof, 1),
                                     group_sets[groups_choice]));
}

static void
cleanup (void)
{
  if (relay != NULL)
    {
      tlspyo_relay_stop (relay);
      g_clear_object (&relay);
    }
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autoptr(GError) error = NULL;

  tlspyo_fuzz_init ();
  /* The relay may close its end while the harness writes. */
  signal (SIGPIPE, SIG_IGN);

  relay = g_object_new (TLSPYO_TYPE_RELAY,
                        "password", PASSWORD,
                        "security", TLSPYO_SECURITY_NONE,
                        "max-object-size", (guint64) MAX_OBJECT,
                        "handshake-timeout", 5,
                        /* Every input comes from the same address: no
                         * delay and no block, or fuzzing would stall. */
                        "auth-failure-delay", 0,
                        "max-auth-failures", 0,
                        "max-queued-bytes", (guint64) 2 * MAX_OBJECT,
                        NULL);
  {
    g_autofree char *hash = tlspyo_relay_hash_password (ALICE_PASSWORD, 10000, &error);

    if (hash == NULL || !tlspyo_relay_add_user (relay, "alice", hash, &error))
      g_error ("%s", error->message);
    tlspyo_relay_grant (relay, "alice", "a", TLSPYO_RIGHTS_JOIN | TLSPYO_RIGHTS_BROADCAST);
    tlspyo_relay_grant (relay, "alice", "b", TLSPYO_RIGHTS_JOIN);
    tlspyo_relay_grant (relay, "alice", "c", TLSPYO_RIGHTS_PRODUCE);
  }
  /* Bounded queues: what the fuzzer produces must not pile up from one
   * input to the next. */
  tlspyo_relay_accept_group (relay, "a", -1, 4);
  tlspyo_relay_accept_group (relay, "b", 2, 4);
  tlspyo_relay_accept_group (relay, "c", -1, 4);
  tlspyo_relay_set_listening (relay, FALSE);
  if (!tlspyo_relay_start (relay, &error))
    g_error ("%s", error->message);
  atexit (cleanup);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  Session s = { 0 };
  int to_relay[2], from_relay[2];
  guint mode = 0, groups_choice = 0, who = 0;
  gint64 deadline;

  if (size > 0)
    {
      mode = data[0] & 3;
      groups_choice = (data[0] >> 2) & 3;
      who = (data[0] >> 4) & 3;
      if (who == 3)
        who = 0;
      data++;
      size--;
    }

  if (pipe (to_relay) != 0 || pipe (from_relay) != 0)
    g_error ("pipe: %s", g_strerror (errno));
  s.to_relay = to_relay[1];
  s.from_relay = from_relay[0];
  fcntl (s.to_relay, F_SETFL, O_NONBLOCK);
  fcntl (s.from_relay, F_SETFL, O_NONBLOCK);
  s.dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, MAX_OBJECT, TLSPYO_FRAME_MASK_ALL);
  g_queue_init (&s.frames);

  {
    g_autoptr(GInputStream) input = g_unix_input_stream_new (to_relay[0], TRUE);
    g_autoptr(GOutputStream) output = g_unix_output_stream_new (from_relay[1], TRUE);
    g_autoptr(GIOStream) stream = g_simple_io_stream_new (input, output);

    tlspyo_relay_accept_stream (relay, stream, "192.0.2.1:4000");
  }

  if (mode > 0)
    handshake (&s, mode, groups_choice, who);
  session_write (&s, data, size);

  /* End of input: the relay must close, whatever state it is in. */
  close (s.to_relay);
  while (!s.eof)
    {
      struct pollfd fd = { s.from_relay, POLLIN, 0 };

      if (poll (&fd, 1, STALL_MS) == 0)
        g_error ("the relay did not close the connection within %d ms of its end", STALL_MS);
      session_read (&s);
    }
  close (s.from_relay);

  deadline = g_get_monotonic_time () + STALL_MS * 1000;
  while (tlspyo_relay_get_n_peers (relay) > 0)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("the relay still holds the connection %d ms after it closed", STALL_MS);
      g_usleep (200);
    }

  g_queue_clear_full (&s.frames, received_free);
  tlspyo_frame_decoder_free (s.dec);
  return 0;
}
