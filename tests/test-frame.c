/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-error.h"

#define MiB (1024 * 1024)

/* Helpers */

typedef struct {
  TlspyoFrameType  type;
  GVariant        *meta;
  GBytes          *body;
} Received;

static void
received_free (gpointer data)
{
  Received *r = data;

  g_variant_unref (r->meta);
  g_clear_pointer (&r->body, g_bytes_unref);
  g_free (r);
}

typedef struct {
  GPtrArray          *frames;          /* of Received */
  guint               stop_after;      /* 0: never ask to stop */
  TlspyoFrameDecoder *dec;             /* for open_after */
  TlspyoFrameType     open_after;      /* 0: never switch limits */
} Collector;

static void
collector_init (Collector *c)
{
  memset (c, 0, sizeof *c);
  c->frames = g_ptr_array_new_with_free_func (received_free);
}

static void
collector_clear (Collector *c)
{
  g_clear_pointer (&c->frames, g_ptr_array_unref);
}

static gboolean
collect_cb (const TlspyoFrame *frame,
            gpointer           user_data)
{
  Collector *c = user_data;
  Received *r;

  /* What the header promises every consumer. */
  g_assert_nonnull (frame->meta);
  g_assert_false (g_variant_is_floating (frame->meta));
  g_assert_true (g_variant_is_of_type (frame->meta, tlspyo_frame_meta_type (frame->type)));
  g_assert_true (g_variant_is_normal_form (frame->meta));
  g_assert_true ((frame->body != NULL) == tlspyo_frame_type_has_body (frame->type));

  /* Between frames while the callback runs. */
  if (c->dec != NULL)
    g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (c->dec), ==, 0);

  r = g_new0 (Received, 1);
  r->type = frame->type;
  r->meta = g_variant_ref (frame->meta);
  r->body = frame->body ? g_bytes_ref (frame->body) : NULL;
  g_ptr_array_add (c->frames, r);

  if (c->open_after != 0 && frame->type == c->open_after)
    tlspyo_frame_decoder_set_limits (c->dec, TLSPYO_FRAME_MAX_META, MiB,
                                     TLSPYO_FRAME_MASK_ALL);

  return c->stop_after == 0 || c->frames->len < c->stop_after;
}

static Received *
collected (Collector *c,
           guint      i)
{
  g_assert_cmpuint (i, <, c->frames->len);
  return g_ptr_array_index (c->frames, i);
}

static GVariant *
bytes_variant (guint8 seed,
               gsize  len)
{
  g_autofree guint8 *buf = g_malloc (len);
  gsize i;

  for (i = 0; i < len; i++)
    buf[i] = (guint8) (seed + i * 7);

  return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, buf, len, 1);
}

/* Floating metadata of the right type for @type; @seed varies it. */
static GVariant *
sample_meta (TlspyoFrameType type,
             guint           seed)
{
  const char *groups[] = { "workers", "loggers", "日本語", NULL };

  switch (type)
    {
    case TLSPYO_FRAME_HELLO:
      return g_variant_new ("(u@ay)", TLSPYO_PROTOCOL_VERSION + seed, bytes_variant (seed, 32));
    case TLSPYO_FRAME_CHALLENGE:
      return g_variant_new ("(@ay@ayu)", bytes_variant (seed, 32), bytes_variant (seed + 1, 16), 600000 + seed);
    case TLSPYO_FRAME_AUTH:
      return g_variant_new ("(@ay^as)", bytes_variant (seed, 32), groups);
    case TLSPYO_FRAME_WELCOME:
      return g_variant_new ("(@ay)", bytes_variant (seed, 32));
    case TLSPYO_FRAME_REFUSED:
      return g_variant_new ("(us)", TLSPYO_ERROR_AUTHENTICATION, "wrong password");
    case TLSPYO_FRAME_OBJECT:
      return g_variant_new_parsed ("(@a{si} {'workers': %i, 'loggers': -1},)", (gint32) seed);
    case TLSPYO_FRAME_NOTIFY:
      return g_variant_new ("(si)", "workers", (gint32) seed);
    case TLSPYO_FRAME_ACK:
      return g_variant_new ("(t)", (guint64) seed * G_GUINT64_CONSTANT (0x100000001));
    case TLSPYO_FRAME_DELIVER:
      return g_variant_new ("(stt)", seed % 2 ? "workers" : "", (guint64) seed << 40 | 1,
                            (guint64) seed + 1);
    case TLSPYO_FRAME_BYE:
      return g_variant_new ("(s)", "shutting down");
    case TLSPYO_FRAME_PING:
    case TLSPYO_FRAME_PONG:
      return g_variant_new ("(t)", (guint64) seed);
    case TLSPYO_FRAME_PRODUCED:
      return g_variant_new ("(sb)", seed % 2 ? "workers" : "w", (gboolean) (seed % 3 == 0));
    case TLSPYO_FRAME_DENIED:
      return g_variant_new ("(uss)", TLSPYO_ERROR_GROUP_REFUSED, "workers", "not allowed");
    case TLSPYO_FRAME_HELLO_USER:
      return g_variant_new ("(u@ays)", TLSPYO_PROTOCOL_VERSION + seed, bytes_variant (seed, 32),
                            seed % 2 ? "trainer" : "");
    case TLSPYO_FRAME_SESSION:
      return g_variant_new_parsed ("(%@ay, %t, @a{st} {'workers': %t}, @a{s(tt)} {'loggers': (%t, %t)})",
                                   bytes_variant (seed, 16), (guint64) seed << 33,
                                   (guint64) seed * 3, (guint64) seed << 40 | 1, (guint64) seed);
    case TLSPYO_FRAME_RESUMED:
      return g_variant_new ("(ttb)", (guint64) seed, (guint64) seed * 1000 + 2,
                            (gboolean) (seed % 2));
    case TLSPYO_FRAME_TAKEN:
      return g_variant_new_parsed ("(@a{su} {'workers': %u, 'w': 1},)", (guint32) seed + 1);
    default:
      g_assert_not_reached ();
    }
}

static GVariant *
sample_object (guint seed)
{
  return g_variant_new_parsed ("(%u, 'payload', [1.5, -2.0], {'k': <%i>})",
                               seed, (gint32) seed);
}

/* Appends a whole frame to @out; @object may be NULL and is consumed if floating.
 * Returns the body as sent, or NULL. */
static GBytes *
append_frame (GByteArray      *out,
              TlspyoFrameType  type,
              GVariant        *meta,
              GVariant        *object)
{
  GBytes *body = NULL;

  if (object != NULL)
    body = tlspyo_object_to_bytes (object);

  tlspyo_frame_append (out, type, meta, body ? g_bytes_get_size (body) : 0);
  if (body != NULL)
    g_byte_array_append (out, g_bytes_get_data (body, NULL), g_bytes_get_size (body));

  return body;
}

/* A header with every field under the test's control, valid ones included. */
static void
raw_header (guint8  h[TLSPYO_FRAME_HEADER_SIZE],
            guint8  magic,
            guint8  version,
            guint8  type,
            guint8  flags,
            guint32 meta_len,
            guint64 body_len)
{
  tlspyo_frame_write_header (h, (TlspyoFrameType) type, meta_len, body_len);
  h[0] = magic;
  h[1] = version;
  h[3] = flags;
}

static TlspyoFrameDecoder *
open_decoder (void)
{
  return tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 64 * MiB, TLSPYO_FRAME_MASK_ALL);
}

/* Feeds @data the way a connection would: bodies are read straight into
 * body_space() (never more than @chunk at a time), everything else goes
 * through feed() in pieces of @chunk bytes. */
static gboolean
feed_like_reader (TlspyoFrameDecoder  *dec,
                  const guint8        *data,
                  gsize                len,
                  gsize                chunk,
                  Collector           *c,
                  GError             **error)
{
  gsize pos = 0;

  while (pos < len)
    {
      gsize n_missing;
      guint8 *space = tlspyo_frame_decoder_body_space (dec, &n_missing);
      gsize n;

      if (space != NULL)
        {
          g_assert_cmpuint (n_missing, >, 0);
          n = MIN (MIN (chunk, n_missing), len - pos);
          memcpy (space, data + pos, n);
          if (!tlspyo_frame_decoder_commit_body (dec, n, collect_cb, c, error))
            return FALSE;
        }
      else
        {
          n = MIN (chunk, len - pos);
          if (!tlspyo_frame_decoder_feed (dec, data + pos, n, collect_cb, c, error))
            return FALSE;
        }
      pos += n;
    }

  return TRUE;
}

static gboolean
feed_in_chunks (TlspyoFrameDecoder  *dec,
                const guint8        *data,
                gsize                len,
                gsize                chunk,
                Collector           *c,
                GError             **error)
{
  gsize pos;

  for (pos = 0; pos < len; pos += chunk)
    if (!tlspyo_frame_decoder_feed (dec, data + pos, MIN (chunk, len - pos),
                                    collect_cb, c, error))
      return FALSE;

  return TRUE;
}

/* Feeds @data to a fresh open decoder and checks it fails with a protocol
 * error containing @message; returns how many frames came out first. */
static guint
expect_protocol_error (TlspyoFrameDecoder *dec,
                       const guint8       *data,
                       gsize               len,
                       const char         *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) again = NULL;
  Collector c;
  guint n;

  collector_init (&c);
  g_assert_false (tlspyo_frame_decoder_feed (dec, data, len, collect_cb, &c, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  if (strstr (error->message, message) == NULL)
    g_error ("error “%s” does not mention “%s”", error->message, message);

  /* The stream is out of step: no further input is accepted, even valid. */
  {
    g_autoptr(GByteArray) valid = g_byte_array_new ();

    append_frame (valid, TLSPYO_FRAME_BYE, sample_meta (TLSPYO_FRAME_BYE, 0), NULL);
    g_assert_false (tlspyo_frame_decoder_feed (dec, valid->data, valid->len,
                                               collect_cb, &c, &again));
    g_assert_error (again, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
    g_assert_cmpstr (again->message, ==, error->message);
  }

  {
    gsize n_missing = 1;

    g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
    g_assert_cmpuint (n_missing, ==, 0);
    g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);
  }

  n = c.frames->len;
  collector_clear (&c);
  return n;
}

static void
assert_bytes_equal (GBytes *a,
                    GBytes *b)
{
  g_assert_nonnull (a);
  g_assert_nonnull (b);
  g_assert_cmpmem (g_bytes_get_data (a, NULL), g_bytes_get_size (a),
                   g_bytes_get_data (b, NULL), g_bytes_get_size (b));
}

/* Static properties */

static void
test_types (void)
{
  guint t;

  for (t = TLSPYO_FRAME_HELLO; t <= TLSPYO_FRAME_TYPE_LAST; t++)
    {
      const GVariantType *mt = tlspyo_frame_meta_type (t);

      g_assert_nonnull (mt);
      g_assert_true (g_variant_type_string_is_valid (g_variant_type_peek_string (mt)));
      g_assert_true (g_variant_type_is_tuple (mt));
      g_assert_true (g_variant_type_is_definite (mt));
      g_assert_cmpstr (tlspyo_frame_type_to_string (t), !=, "unknown");
      g_assert_true (TLSPYO_FRAME_MASK_ALL & TLSPYO_FRAME_BIT (t));
    }

  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_HELLO), G_VARIANT_TYPE ("(uay)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_CHALLENGE), G_VARIANT_TYPE ("(ayayu)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_AUTH), G_VARIANT_TYPE ("(ayas)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_WELCOME), G_VARIANT_TYPE ("(ay)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_REFUSED), G_VARIANT_TYPE ("(us)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_OBJECT), G_VARIANT_TYPE ("(a{si})")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_NOTIFY), G_VARIANT_TYPE ("(si)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_ACK), G_VARIANT_TYPE ("(t)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_DELIVER), G_VARIANT_TYPE ("(stt)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_SESSION),
                                       G_VARIANT_TYPE ("(ayta{st}a{s(tt)})")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_RESUMED), G_VARIANT_TYPE ("(ttb)")));
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_TAKEN), G_VARIANT_TYPE ("(a{su})")));
  g_assert_cmpint (TLSPYO_PROTOCOL_VERSION, ==, 2);
  g_assert_true (g_variant_type_equal (tlspyo_frame_meta_type (TLSPYO_FRAME_BYE), G_VARIANT_TYPE ("(s)")));

  for (t = TLSPYO_FRAME_HELLO; t <= TLSPYO_FRAME_TYPE_LAST; t++)
    g_assert_cmpint (tlspyo_frame_type_has_body (t), ==,
                     t == TLSPYO_FRAME_OBJECT || t == TLSPYO_FRAME_DELIVER ||
                     t == TLSPYO_FRAME_PRODUCED);

  g_assert_cmpstr (tlspyo_frame_type_to_string (TLSPYO_FRAME_HELLO), ==, "HELLO");
  g_assert_cmpstr (tlspyo_frame_type_to_string (TLSPYO_FRAME_OBJECT), ==, "OBJECT");
  g_assert_cmpstr (tlspyo_frame_type_to_string (TLSPYO_FRAME_BYE), ==, "BYE");
  g_assert_cmpstr (tlspyo_frame_type_to_string (0), ==, "unknown");
  g_assert_cmpstr (tlspyo_frame_type_to_string (TLSPYO_FRAME_TYPE_LAST + 1), ==, "unknown");
  g_assert_cmpstr (tlspyo_frame_type_to_string (255), ==, "unknown");
  g_assert_null (tlspyo_frame_meta_type (0));
  g_assert_null (tlspyo_frame_meta_type (TLSPYO_FRAME_TYPE_LAST + 1));
  g_assert_false (tlspyo_frame_type_has_body (0));
  g_assert_false (tlspyo_frame_type_has_body (200));

  g_assert_false (TLSPYO_FRAME_MASK_ALL & TLSPYO_FRAME_BIT (0));
  g_assert_false (TLSPYO_FRAME_MASK_ALL & TLSPYO_FRAME_BIT (TLSPYO_FRAME_TYPE_LAST + 1));
}

/* The exact bytes of docs/protocol.md: a change here breaks every peer. */
static void
test_header_layout (void)
{
  const guint8 expected[TLSPYO_FRAME_HEADER_SIZE] = {
    0x54, 0x02, 0x06, 0x00,
    0x04, 0x03, 0x02, 0x01,
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
  };
  guint8 h[TLSPYO_FRAME_HEADER_SIZE];

  memset (h, 0xaa, sizeof h);
  tlspyo_frame_write_header (h, TLSPYO_FRAME_OBJECT, 0x01020304,
                             G_GUINT64_CONSTANT (0x0102030405060708));
  g_assert_cmpmem (h, sizeof h, expected, sizeof expected);
}

static void
test_encode_layout (void)
{
  const guint8 expected[] = {
    0x54, 0x02, TLSPYO_FRAME_ACK, 0x00,
    0x08, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* metadata "(t)", little-endian whatever the host */
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
  };
  g_autoptr(GBytes) frame = NULL;
  g_autoptr(GByteArray) out = g_byte_array_new ();

  frame = tlspyo_frame_encode (TLSPYO_FRAME_ACK,
                               g_variant_new ("(t)", G_GUINT64_CONSTANT (0x0102030405060708)),
                               0);
  g_assert_cmpmem (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame),
                   expected, sizeof expected);

  /* append() adds to what is there. */
  g_byte_array_append (out, (const guint8 *) "xy", 2);
  tlspyo_frame_append (out, TLSPYO_FRAME_ACK,
                       g_variant_new ("(t)", G_GUINT64_CONSTANT (0x0102030405060708)), 0);
  g_assert_cmpmem (out->data + 2, out->len - 2, expected, sizeof expected);
  g_assert_cmpmem (out->data, 2, "xy", 2);

  /* Header announces the body; encode() does not include it. */
  g_clear_pointer (&frame, g_bytes_unref);
  frame = tlspyo_frame_encode (TLSPYO_FRAME_DELIVER, g_variant_new ("(stt)", "g", (guint64) 1, (guint64) 1), 1000);
  /* "g\0", padding to 8, two uint64, one framing offset. */
  g_assert_cmpuint (g_bytes_get_size (frame), ==, TLSPYO_FRAME_HEADER_SIZE + 25);
  g_assert_cmpmem ((const guint8 *) g_bytes_get_data (frame, NULL) + 8, 8,
                   "\xe8\x03\0\0\0\0\0\0", 8);
}

static void
test_encode_non_floating (void)
{
  g_autoptr(GVariant) meta = g_variant_ref_sink (g_variant_new ("(s)", "bye"));
  g_autoptr(GBytes) frame = tlspyo_frame_encode (TLSPYO_FRAME_BYE, meta, 0);

  /* The caller's reference is left alone. */
  g_assert_nonnull (frame);
  g_assert_false (g_variant_is_floating (meta));
  g_assert_cmpstr (g_variant_get_type_string (meta), ==, "(s)");
}

static void
test_encode_non_normal_meta (void)
{
  /* A "(s)" whose string has trailing junk after its NUL: deserializable but
   * not normal. append() must send the normal form, which a decoder accepts. */
  static const guint8 data[] = { 'a', 'b', '\0', 'x', '\0' };
  g_autoptr(GBytes) bytes = g_bytes_new_static (data, sizeof data);
  g_autoptr(GVariant) meta = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE ("(s)"), bytes, FALSE));
  g_autoptr(GBytes) frame = NULL;
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  Collector c;

  g_assert_false (g_variant_is_normal_form (meta));
  frame = tlspyo_frame_encode (TLSPYO_FRAME_BYE, meta, 0);

  collector_init (&c);
  g_assert_true (tlspyo_frame_decoder_feed (dec, g_bytes_get_data (frame, NULL),
                                            g_bytes_get_size (frame), collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 1);
  g_assert_true (g_variant_equal (collected (&c, 0)->meta, meta));
  collector_clear (&c);
}

/* Metadata serialized once (tlspyo_frame_serialize_meta()) and appended
 * later must give the bytes tlspyo_frame_append() writes, normal form
 * included, at an aligned position and after an odd-length prefix. */
static void
test_encode_serialized_same (void)
{
  static const guint8 data[] = { 'a', 'b', '\0', 'x', '\0' };
  g_autoptr(GBytes) junk = g_bytes_new_static (data, sizeof data);
  GVariant *metas[] = {
    g_variant_ref_sink (g_variant_new ("(s)", "the endpoint stopped")),
    /* Not in normal form: deserializable, with junk after the NUL. */
    g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE ("(s)"), junk, FALSE)),
  };

  g_assert_false (g_variant_is_normal_form (metas[1]));
  for (guint i = 0; i < G_N_ELEMENTS (metas); i++)
    for (guint prefix = 0; prefix < 4; prefix += 3)
      {
        g_autoptr(GByteArray) appended = g_byte_array_new ();
        g_autoptr(GByteArray) copied = g_byte_array_new ();
        g_autoptr(GBytes) serialized = NULL;
        g_autoptr(GVariant) normal = g_variant_get_normal_form (metas[i]);

        if (prefix > 0)
          {
            g_byte_array_set_size (appended, prefix);
            g_byte_array_set_size (copied, prefix);
            memset (appended->data, 0xaa, prefix);
            memset (copied->data, 0xaa, prefix);
          }

        tlspyo_frame_append (appended, TLSPYO_FRAME_BYE, metas[i], 0);
        serialized = tlspyo_frame_serialize_meta (TLSPYO_FRAME_BYE, metas[i]);
        tlspyo_frame_append_serialized (copied, TLSPYO_FRAME_BYE, serialized, 0);

        g_assert_cmpmem (appended->data, appended->len, copied->data, copied->len);
        /* What follows the header is the normal form, not the junk. */
        g_assert_cmpmem (copied->data + prefix + TLSPYO_FRAME_HEADER_SIZE,
                         copied->len - prefix - TLSPYO_FRAME_HEADER_SIZE,
                         g_variant_get_data (normal), g_variant_get_size (normal));
      }

  for (guint i = 0; i < G_N_ELEMENTS (metas); i++)
    g_variant_unref (metas[i]);
}

/* Appending what the frame type does not allow is a programmer error: a
 * critical, in a subprocess. */
typedef struct {
  TlspyoFrameType  type;
  const char      *meta;      /* GVariant text */
  gsize            body_len;
  const char      *critical;  /* pattern of stderr */
} AppendMisuse;

static const AppendMisuse append_wrong_meta_type =
  { TLSPYO_FRAME_ACK, "('not a count',)", 0, "*CRITICAL*g_variant_is_of_type*" };
static const AppendMisuse append_body_on_bodyless =
  { TLSPYO_FRAME_BYE, "('x',)", 10, "*CRITICAL*body_len*" };

static void
test_append_misuse (gconstpointer data)
{
  const AppendMisuse *misuse = data;

  if (g_test_subprocess ())
    {
      g_autoptr(GByteArray) out = g_byte_array_new ();

      tlspyo_frame_append (out, misuse->type, g_variant_new_parsed (misuse->meta),
                           misuse->body_len);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr (misuse->critical);
}

/* Round trips */

static void
test_roundtrip_all_types (void)
{
  const gsize chunks[] = { 1, 3, 16, 17, 100, 4096, G_MAXSIZE };
  guint t;
  gsize k;

  for (k = 0; k < G_N_ELEMENTS (chunks); k++)
    for (t = TLSPYO_FRAME_HELLO; t <= TLSPYO_FRAME_TYPE_LAST; t++)
      {
        g_autoptr(GByteArray) stream = g_byte_array_new ();
        g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
        g_autoptr(GVariant) meta = g_variant_ref_sink (sample_meta (t, t));
        g_autoptr(GVariant) object = g_variant_ref_sink (sample_object (t));
        g_autoptr(GBytes) body = NULL;
        g_autoptr(GError) error = NULL;
        Received *r;
        Collector c;

        body = append_frame (stream, t, meta,
                             tlspyo_frame_type_has_body (t) ? object : NULL);

        collector_init (&c);
        c.dec = dec;
        g_assert_true (feed_like_reader (dec, stream->data, stream->len, chunks[k], &c, &error));
        g_assert_no_error (error);
        g_assert_cmpuint (c.frames->len, ==, 1);
        g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);

        r = collected (&c, 0);
        g_assert_cmpint (r->type, ==, t);
        g_assert_true (g_variant_equal (r->meta, meta));

        if (tlspyo_frame_type_has_body (t))
          {
            g_autoptr(GVariant) back = NULL;

            assert_bytes_equal (r->body, body);
            back = tlspyo_object_from_body (r->body, &error);
            g_assert_no_error (error);
            g_assert_true (g_variant_equal (back, object));
          }
        else
          {
            g_assert_null (r->body);
          }

        collector_clear (&c);
      }
}

static void
build_mixed_stream (GByteArray *stream,
                    GPtrArray  *metas,
                    GPtrArray  *bodies,
                    guint       n_frames)
{
  guint i;

  for (i = 0; i < n_frames; i++)
    {
      TlspyoFrameType t = TLSPYO_FRAME_HELLO + i % TLSPYO_FRAME_TYPE_LAST;
      GVariant *meta = g_variant_ref_sink (sample_meta (t, i));
      GBytes *body;

      body = append_frame (stream, t, meta,
                           tlspyo_frame_type_has_body (t) ? sample_object (i) : NULL);
      g_ptr_array_add (metas, meta);
      g_ptr_array_add (bodies, body);
    }
}

static void
check_mixed_stream (Collector *c,
                    GPtrArray *metas,
                    GPtrArray *bodies,
                    guint      n_frames)
{
  guint i;

  g_assert_cmpuint (c->frames->len, ==, n_frames);
  for (i = 0; i < n_frames; i++)
    {
      Received *r = collected (c, i);

      g_assert_cmpint (r->type, ==, TLSPYO_FRAME_HELLO + i % TLSPYO_FRAME_TYPE_LAST);
      g_assert_true (g_variant_equal (r->meta, g_ptr_array_index (metas, i)));
      if (g_ptr_array_index (bodies, i) != NULL)
        assert_bytes_equal (r->body, g_ptr_array_index (bodies, i));
      else
        g_assert_null (r->body);
    }
}

static void
test_many_frames_one_chunk (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(GPtrArray) metas = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  Collector c;

  build_mixed_stream (stream, metas, bodies, 200);

  collector_init (&c);
  c.dec = dec;
  g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, stream->len, collect_cb, &c, &error));
  g_assert_no_error (error);
  check_mixed_stream (&c, metas, bodies, 200);
  g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);
  collector_clear (&c);
}

static void
test_byte_at_a_time (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(GPtrArray) metas = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  gsize buffered = 0;
  guint seen = 0;
  gsize i;
  Collector c;

  build_mixed_stream (stream, metas, bodies, 30);

  collector_init (&c);
  for (i = 0; i < stream->len; i++)
    {
      g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data + i, 1, collect_cb, &c, &error));
      g_assert_no_error (error);

      /* Every byte is either held for the current frame or completes one. */
      if (c.frames->len > seen)
        {
          g_assert_cmpuint (c.frames->len, ==, seen + 1);
          g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);
          seen = c.frames->len;
          buffered = 0;
        }
      else
        {
          g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, ++buffered);
        }
    }

  check_mixed_stream (&c, metas, bodies, 30);
  collector_clear (&c);
}

/* Every split point of a stream, as TCP may deliver it. */
static void
test_split_everywhere (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(GPtrArray) metas = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  gsize k;

  build_mixed_stream (stream, metas, bodies, 9);

  for (k = 0; k <= stream->len; k++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
      g_autoptr(GError) error = NULL;
      Collector c;

      collector_init (&c);
      g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, k, collect_cb, &c, &error));
      g_assert_no_error (error);
      g_assert_true (feed_like_reader (dec, stream->data + k, stream->len - k, 5, &c, &error));
      g_assert_no_error (error);
      check_mixed_stream (&c, metas, bodies, 9);
      collector_clear (&c);
    }
}

/* An incomplete frame is not an error: the decoder waits for the rest. */
static void
test_truncated_waits (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(GVariant) object = g_variant_ref_sink (sample_object (5));
  g_autoptr(GBytes) body = NULL;
  gsize k;

  body = append_frame (stream, TLSPYO_FRAME_OBJECT, sample_meta (TLSPYO_FRAME_OBJECT, 5), object);

  for (k = 0; k < stream->len; k++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
      g_autoptr(GError) error = NULL;
      gsize n_missing;
      guint8 *space;
      Collector c;

      collector_init (&c);
      g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, k, collect_cb, &c, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (c.frames->len, ==, 0);
      g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, k);

      /* Body space only once header and metadata are in. */
      space = tlspyo_frame_decoder_body_space (dec, &n_missing);
      if (k < stream->len - g_bytes_get_size (body))
        {
          g_assert_null (space);
        }
      else
        {
          g_assert_nonnull (space);
          g_assert_cmpuint (n_missing, ==, stream->len - k);
        }

      g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data + k, stream->len - k,
                                                collect_cb, &c, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (c.frames->len, ==, 1);
      assert_bytes_equal (collected (&c, 0)->body, body);
      collector_clear (&c);
    }
}

static void
test_feed_empty (void)
{
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  gsize n_missing;
  Collector c;

  collector_init (&c);
  g_assert_true (tlspyo_frame_decoder_feed (dec, NULL, 0, collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 0);
  g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);
  g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
  collector_clear (&c);

  /* NULL is fine to free, like g_free(). */
  tlspyo_frame_decoder_free (NULL);
}

/* Large objects: no copy on either side */

static void
test_large_body_zero_copy (void)
{
  const gsize size = 4 * MiB;
  g_autofree guint8 *payload = g_malloc (size);
  g_autoptr(GBytes) payload_bytes = NULL;
  g_autoptr(GVariant) object = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) trailer = NULL;
  g_autoptr(GBytes) head = NULL;
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GVariant) back = NULL;
  g_autoptr(GError) error = NULL;
  const guint8 *payload_data;
  guint8 *base = NULL;
  gsize body_len, done, n_missing, i;
  Collector c;

  for (i = 0; i < size; i++)
    payload[i] = (guint8) (i * 31 + (i >> 12));
  payload_bytes = g_bytes_new_take (g_steal_pointer (&payload), size);
  payload_data = g_bytes_get_data (payload_bytes, NULL);
  object = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE ("ay"), payload_bytes, TRUE));

  /* Sender: the object's own buffer goes out as-is. */
  tlspyo_object_to_body (object, &data, &trailer);
  g_assert_true (g_bytes_get_data (data, NULL) == (gconstpointer) payload_data);
  g_assert_cmpuint (g_bytes_get_size (data), ==, size);
  g_assert_cmpmem (g_bytes_get_data (trailer, NULL), g_bytes_get_size (trailer), "\0ay", 3);
  body_len = size + 3;

  head = tlspyo_frame_encode (TLSPYO_FRAME_DELIVER, g_variant_new ("(stt)", "big", (guint64) 1, (guint64) 1), body_len);

  collector_init (&c);
  c.dec = dec;

  /* Header and metadata, plus a few body bytes through feed(). */
  {
    g_autoptr(GByteArray) first = g_byte_array_new ();

    g_byte_array_append (first, g_bytes_get_data (head, NULL), g_bytes_get_size (head));
    g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
    g_byte_array_append (first, payload_data, 1000);
    g_assert_true (tlspyo_frame_decoder_feed (dec, first->data, first->len, collect_cb, &c, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, first->len);
  }

  /* Then the rest straight into the decoder's buffer, 64 KiB at a time. */
  done = 1000;
  while (done < body_len)
    {
      guint8 *space = tlspyo_frame_decoder_body_space (dec, &n_missing);
      gsize n;

      g_assert_nonnull (space);
      g_assert_cmpuint (n_missing, ==, body_len - done);
      if (base == NULL)
        base = space - done;
      /* One buffer for the whole body, never moved. */
      g_assert_true (space == base + done);

      n = MIN (n_missing, 64 * 1024);
      for (i = 0; i < n; i++)
        space[i] = done + i < size ? payload_data[done + i] : "\0ay"[done + i - size];
      g_assert_true (tlspyo_frame_decoder_commit_body (dec, n, collect_cb, &c, &error));
      g_assert_no_error (error);
      done += n;

      if (done < body_len)
        {
          g_assert_cmpuint (c.frames->len, ==, 0);
          g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==,
                            g_bytes_get_size (head) + done);
        }
    }

  g_assert_cmpuint (c.frames->len, ==, 1);
  g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
  g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);

  /* Receiver: the frame's body is that buffer, and so is the object. */
  g_assert_true (g_bytes_get_data (collected (&c, 0)->body, NULL) == (gconstpointer) base);
  g_assert_cmpuint (g_bytes_get_size (collected (&c, 0)->body), ==, body_len);
  back = tlspyo_object_from_body (collected (&c, 0)->body, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_get_data (back) == (gconstpointer) base);
  g_assert_cmpstr (g_variant_get_type_string (back), ==, "ay");
  /* Not g_variant_equal(): on an untrusted value it compares printed text,
   * which for 4 MiB is very slow under ASan. */
  g_assert_cmpmem (g_variant_get_data (back), g_variant_get_size (back), payload_data, size);

  collector_clear (&c);
}

/* Objects of every shape */

static const char * const object_texts[] = {
  "'hello'",
  "''",
  "'日本語 with a tab\\t'",
  "byte 0xff",
  "true",
  "int16 -2",
  "uint16 65535",
  "int32 -123456",
  "uint32 4000000000",
  "int64 -9223372036854775808",
  "uint64 18446744073709551615",
  "3.25",
  "-0.0",
  "handle 3",
  "objectpath '/org/example/Obj'",
  "signature 'a{sv}'",
  "[1, 2, 3]",
  "@ay []",
  "@as []",
  "@a{sv} {}",
  "@aay [[], [1], [2, 3]]",
  "['a', 'bb', '']",
  "{'a': <1>, 'b': <'x'>, 'c': <[1.5]>, 'd': <@mi nothing>}",
  "{1: 'one', 2: 'two'}",
  "(1, ('x', [true, false]), (byte 3, 2.5))",
  "()",
  "[(), ()]",
  "((), 1)",
  "@mi 5",
  "@mi nothing",
  "@ms just 'x'",
  "@mms just nothing",
  "@mmy nothing",
  "[just 1, nothing]",
  "<<<42>>>",
  "[<1>, <'s'>, <(1, 'a')>]",
  "@a(ii) [(1, 2), (3, 4)]",
  "@a{s(iay)} {'k': (1, [1, 2])}",
  "(@ay b'bytestring', 'tail')",
};

static void
check_object_roundtrip (GVariant *object)
{
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) trailer = NULL;
  g_autoptr(GBytes) whole = NULL;
  g_autoptr(GBytes) as_v = NULL;
  g_autoptr(GVariant) back = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) cat = g_byte_array_new ();
  g_autofree char *text = g_variant_print (object, TRUE);
  const char *type_string = g_variant_get_type_string (object);

  g_test_message ("object %s", text);

  tlspyo_object_to_body (object, &data, &trailer);
  g_assert_cmpuint (g_bytes_get_size (trailer), ==, strlen (type_string) + 1);
  g_assert_cmpint (((const char *) g_bytes_get_data (trailer, NULL))[0], ==, '\0');
  g_assert_cmpmem ((const char *) g_bytes_get_data (trailer, NULL) + 1,
                   g_bytes_get_size (trailer) - 1, type_string, strlen (type_string));

  if (g_bytes_get_size (data) > 0)
    g_byte_array_append (cat, g_bytes_get_data (data, NULL), g_bytes_get_size (data));
  g_byte_array_append (cat, g_bytes_get_data (trailer, NULL), g_bytes_get_size (trailer));

  whole = tlspyo_object_to_bytes (object);
  g_assert_cmpmem (g_bytes_get_data (whole, NULL), g_bytes_get_size (whole), cat->data, cat->len);

  /* The body is exactly the little-endian "v" serialization. */
  if (G_BYTE_ORDER == G_LITTLE_ENDIAN)
    {
      g_autoptr(GVariant) v = g_variant_ref_sink (g_variant_new_variant (object));

      as_v = g_variant_get_data_as_bytes (v);
      assert_bytes_equal (whole, as_v);
    }

  g_assert_true (tlspyo_object_body_check (g_bytes_get_data (whole, NULL),
                                           g_bytes_get_size (whole), &error));
  g_assert_no_error (error);

  back = tlspyo_object_from_body (whole, &error);
  g_assert_no_error (error);
  g_assert_nonnull (back);
  g_assert_false (g_variant_is_floating (back));
  g_assert_true (g_variant_equal (back, object));
  g_assert_cmpstr (g_variant_get_type_string (back), ==, type_string);

  /* from_body() keeps a ref on an aligned body instead of copying it. */
  if (G_BYTE_ORDER == G_LITTLE_ENDIAN && g_variant_get_size (back) > 0)
    g_assert_true (g_variant_get_data (back) == g_bytes_get_data (whole, NULL));

  /* And through a whole OBJECT frame. */
  {
    g_autoptr(GByteArray) stream = g_byte_array_new ();
    g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
    g_autoptr(GVariant) again = NULL;
    g_autoptr(GBytes) sent = NULL;
    Collector c;

    sent = append_frame (stream, TLSPYO_FRAME_OBJECT, sample_meta (TLSPYO_FRAME_OBJECT, 1), object);
    collector_init (&c);
    g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, stream->len, collect_cb, &c, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (c.frames->len, ==, 1);
    assert_bytes_equal (collected (&c, 0)->body, sent);
    again = tlspyo_object_from_body (collected (&c, 0)->body, &error);
    g_assert_no_error (error);
    g_assert_true (g_variant_equal (again, object));
    collector_clear (&c);
  }
}

static void
test_object_types (void)
{
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (object_texts); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) object = g_variant_parse (NULL, object_texts[i], NULL, NULL, &error);

      g_assert_no_error (error);
      check_object_roundtrip (object);
    }
}

/* An object that came from untrusted bytes and is not in normal form goes out
 * in normal form, so the receiver sees what the sender's accessors saw. */
static void
test_object_non_normal (void)
{
  /* "(ys)" serialized with junk between the string's NUL and the end. */
  static const guint8 raw[] = { 7, 'a', 'b', '\0', 'z' };
  g_autoptr(GBytes) bytes = g_bytes_new_static (raw, sizeof raw);
  g_autoptr(GVariant) object = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE ("(ys)"), bytes, FALSE));
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GVariant) back = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_false (g_variant_is_normal_form (object));
  body = tlspyo_object_to_bytes (object);
  back = tlspyo_object_from_body (body, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_is_normal_form (back));
  g_assert_true (g_variant_equal (back, object));
}

/* Floating objects are consumed (the test would leak otherwise). */
static void
test_object_floating (void)
{
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) trailer = NULL;
  g_autoptr(GBytes) whole = NULL;

  tlspyo_object_to_body (g_variant_new_string ("float"), &data, &trailer);
  whole = tlspyo_object_to_bytes (g_variant_new_int32 (7));
  g_assert_cmpmem (g_bytes_get_data (trailer, NULL), g_bytes_get_size (trailer), "\0s", 2);
  g_assert_cmpmem (g_bytes_get_data (whole, NULL), g_bytes_get_size (whole), "\x07\0\0\0\0i", 6);
}

/* A body that is not where g_malloc() would put it still decodes (GVariant
 * copies it then). */
static void
test_object_unaligned (void)
{
  g_autoptr(GVariant) object = g_variant_ref_sink (g_variant_new_parsed ("(int64 5, 'x', [1.5])"));
  g_autoptr(GBytes) whole = tlspyo_object_to_bytes (object);
  g_autoptr(GByteArray) shifted = g_byte_array_new ();
  g_autoptr(GBytes) shifted_bytes = NULL;
  g_autoptr(GBytes) slice = NULL;
  g_autoptr(GVariant) back = NULL;
  g_autoptr(GError) error = NULL;

  g_byte_array_append (shifted, (const guint8 *) "x", 1);
  g_byte_array_append (shifted, g_bytes_get_data (whole, NULL), g_bytes_get_size (whole));
  shifted_bytes = g_byte_array_free_to_bytes (g_steal_pointer (&shifted));
  slice = g_bytes_new_from_bytes (shifted_bytes, 1, g_bytes_get_size (whole));

  back = tlspyo_object_from_body (slice, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_equal (back, object));
}

static void
expect_bad_body (const void *body,
                 gsize       len,
                 const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) bytes = g_bytes_new (body, len);
  g_autoptr(GVariant) object = NULL;

  g_assert_false (tlspyo_object_body_check (body, len, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  if (strstr (error->message, message) == NULL)
    g_error ("error “%s” does not mention “%s”", error->message, message);
  g_clear_error (&error);

  object = tlspyo_object_from_body (bytes, &error);
  g_assert_null (object);
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
}

static void
test_object_bad_body (void)
{
  g_autoptr(GString) deep = g_string_new_len ("\0", 1);
  g_autoptr(GString) long_bad = g_string_new_len ("\0", 1);
  guint i;

  expect_bad_body ("", 0, "too short");
  expect_bad_body ("i", 1, "too short");
  expect_bad_body ("\0", 1, "too short");
  expect_bad_body ("\0\0", 2, "ends with a NUL");
  expect_bad_body ("abc\0", 4, "ends with a NUL");
  expect_bad_body ("ii", 2, "does not end with a NUL byte and a type string");
  expect_bad_body ("\x01\x02\x03iiii", 7, "does not end with a NUL byte and a type string");
  expect_bad_body ("\0i!", 3, "does not end with a NUL byte and a type string");
  expect_bad_body ("\0Z", 2, "does not end with a NUL byte and a type string");
  expect_bad_body ("ab\0 i", 5, "does not end with a NUL byte and a type string");
  expect_bad_body ("\0(i", 3, "not a valid GVariant type");
  expect_bad_body ("\0ii", 3, "not a valid GVariant type");
  expect_bad_body ("\0a", 2, "not a valid GVariant type");
  expect_bad_body ("\0a{vs}", 6, "not a valid GVariant type");
  expect_bad_body ("xx\0)", 4, "not a valid GVariant type");
  expect_bad_body ("\0*", 2, "not definite");
  expect_bad_body ("\0?", 2, "not definite");
  expect_bad_body ("\0r", 2, "not definite");
  expect_bad_body ("\0\0\0\0a?", 6, "not definite");
  expect_bad_body ("\0\0\0\0(ir)", 8, "not definite");
  expect_bad_body ("\0\0\0\0a{?s}", 9, "not definite");

  /* Too deep for GVariant: rejected by the type string scan. */
  for (i = 0; i < 200; i++)
    g_string_append_c (deep, 'a');
  g_string_append_c (deep, 'y');
  expect_bad_body (deep->str, deep->len, "not a valid GVariant type");

  /* A hostile type string is not echoed in full. */
  for (i = 0; i < 10000; i++)
    g_string_append_c (long_bad, '(');
  {
    g_autoptr(GError) error = NULL;

    g_assert_false (tlspyo_object_body_check ((const guint8 *) long_bad->str, long_bad->len, &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
    g_assert_cmpuint (strlen (error->message), <, 300);
  }
}

/* Bodies whose trailer is fine but whose data GVariant would silently replace
 * with "()": reported rather than delivered. */
static void
test_object_mismatch (void)
{
  static const struct {
    const char *body;
    gsize       len;
  } cases[] = {
    { "\x01\x02\x03\0u", 5 },          /* 3 bytes for a 4-byte type */
    { "\0u", 2 },                       /* none at all */
    { "\x01\x02\x03\x04\x05\0u", 7 },  /* too many */
    { "\0(yy)", 5 },
  };
  g_autoptr(GString) deep = g_string_new_len ("\0", 1);
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GBytes) bytes = g_bytes_new (cases[i].body, cases[i].len);
      g_autoptr(GVariant) object = NULL;
      g_autoptr(GError) error = NULL;

      g_assert_true (tlspyo_object_body_check ((const guint8 *) cases[i].body, cases[i].len, NULL));
      object = tlspyo_object_from_body (bytes, &error);
      g_assert_null (object);
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
      g_assert_nonnull (strstr (error->message, "malformed"));
    }

  /* 128 levels passes the type scan but not GVariant's depth limit. */
  for (i = 0; i < 127; i++)
    g_string_append_c (deep, 'a');
  g_string_append_c (deep, 'y');
  {
    g_autoptr(GBytes) bytes = g_bytes_new (deep->str, deep->len);
    g_autoptr(GVariant) object = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_true (tlspyo_object_body_check ((const guint8 *) deep->str, deep->len, NULL));
    object = tlspyo_object_from_body (bytes, &error);
    g_assert_null (object);
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  }

  /* Data GVariant can make sense of, even if odd, still round-trips as its
   * own type: a string without its NUL reads as "". */
  {
    g_autoptr(GBytes) bytes = g_bytes_new ("abc\0s", 5);
    g_autoptr(GVariant) object = NULL;
    g_autoptr(GError) error = NULL;

    object = tlspyo_object_from_body (bytes, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (g_variant_get_type_string (object), ==, "s");
    g_assert_cmpstr (g_variant_get_string (object, NULL), ==, "");
  }
}

/* Decoder errors */

static void
test_error_bad_magic (void)
{
  /* The start of a TLS ClientHello record. */
  static const guint8 tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01 };
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec2 = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec3 = open_decoder ();
  g_autoptr(GByteArray) stream = g_byte_array_new ();

  expect_protocol_error (dec, tls, sizeof tls,
                         "not a tlspyo-glib peer (is one side using TLS and the other not?)");

  /* Known from the first byte: a 7-byte TLS alert must not leave us waiting. */
  expect_protocol_error (dec2, tls, 1, "0x16");

  /* After good frames too. */
  append_frame (stream, TLSPYO_FRAME_BYE, sample_meta (TLSPYO_FRAME_BYE, 0), NULL);
  g_byte_array_append (stream, (const guint8 *) "GET / HTTP/1.1\r\n", 16);
  g_assert_cmpuint (expect_protocol_error (dec3, stream->data, stream->len, "not a tlspyo-glib peer"), ==, 1);
}

static void
test_error_version (void)
{
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec2 = open_decoder ();
  guint8 h[TLSPYO_FRAME_HEADER_SIZE];

  g_autoptr(TlspyoFrameDecoder) dec3 = open_decoder ();

  raw_header (h, TLSPYO_FRAME_MAGIC, 3, TLSPYO_FRAME_BYE, 0, 4, 0);
  expect_protocol_error (dec, h, sizeof h, "version 3");

  raw_header (h, TLSPYO_FRAME_MAGIC, 0, TLSPYO_FRAME_BYE, 0, 4, 0);
  expect_protocol_error (dec2, h, 2, "only version 2 is supported");

  /* Version 1 (before sequenced TAKEN and parked objects) is refused. */
  raw_header (h, TLSPYO_FRAME_MAGIC, 1, TLSPYO_FRAME_BYE, 0, 4, 0);
  expect_protocol_error (dec3, h, sizeof h, "version 1");
}

static void
test_error_type (void)
{
  const guint8 bad[] = { 0, TLSPYO_FRAME_TYPE_LAST + 1, 31, 32, 200, 255 };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
      g_autofree char *message = g_strdup_printf ("unknown frame type %u", bad[i]);
      guint8 h[TLSPYO_FRAME_HEADER_SIZE];

      raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, bad[i], 0, 4, 0);
      expect_protocol_error (dec, h, sizeof h, message);
    }
}

static void
test_error_flags (void)
{
  const guint8 flags[] = { 1, 0x80, 0xff };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (flags); i++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
      guint8 h[TLSPYO_FRAME_HEADER_SIZE];

      raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_BYE, flags[i], 4, 0);
      expect_protocol_error (dec, h, sizeof h, "flags");
    }
}

static void
test_error_disallowed (void)
{
  guint t;

  for (t = TLSPYO_FRAME_HELLO; t <= TLSPYO_FRAME_TYPE_LAST; t++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = NULL;
      g_autoptr(GByteArray) stream = g_byte_array_new ();
      g_autofree char *message = NULL;
      g_autoptr(GBytes) body = NULL;

      if (t == TLSPYO_FRAME_HELLO)
        continue;

      /* A relay before authentication: only HELLO. */
      dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0, TLSPYO_FRAME_BIT (TLSPYO_FRAME_HELLO));
      append_frame (stream, TLSPYO_FRAME_HELLO, sample_meta (TLSPYO_FRAME_HELLO, 0), NULL);
      body = append_frame (stream, t, sample_meta (t, 0),
                           tlspyo_frame_type_has_body (t) ? sample_object (0) : NULL);
      message = g_strdup_printf ("unexpected %s frame", tlspyo_frame_type_to_string (t));
      g_assert_cmpuint (expect_protocol_error (dec, stream->data, stream->len, message), ==, 1);
    }

  /* An empty mask refuses everything. */
  {
    g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (4096, 0, 0);
    g_autoptr(GBytes) frame = tlspyo_frame_encode (TLSPYO_FRAME_HELLO, sample_meta (TLSPYO_FRAME_HELLO, 0), 0);

    expect_protocol_error (dec, g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), "unexpected HELLO frame");
  }
}

static void
test_error_meta_too_large (void)
{
  g_autoptr(TlspyoFrameDecoder) dec = NULL;
  g_autoptr(TlspyoFrameDecoder) dec2 = NULL;
  g_autoptr(GError) error = NULL;
  guint8 h[TLSPYO_FRAME_HEADER_SIZE];
  Collector c;

  /* The header alone is enough: nothing is allocated for the metadata. */
  dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0, TLSPYO_FRAME_MASK_ALL);
  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_AUTH, 0, 70000, 0);
  collector_init (&c);
  g_assert_false (tlspyo_frame_decoder_feed (dec, h, sizeof h, collect_cb, &c, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  g_assert_cmpstr (error->message, ==, "frame metadata of 70000 bytes exceeds the limit of 4096 bytes");
  collector_clear (&c);

  dec2 = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 0, TLSPYO_FRAME_MASK_ALL);
  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_NOTIFY, 0, G_MAXUINT32, 0);
  expect_protocol_error (dec2, h, sizeof h, "exceeds the limit of 1048576 bytes");

  /* Exactly at the limit is fine (the metadata itself is then judged). */
  {
    g_autoptr(TlspyoFrameDecoder) dec3 = tlspyo_frame_decoder_new (10, 0, TLSPYO_FRAME_MASK_ALL);
    g_autoptr(GBytes) frame = tlspyo_frame_encode (TLSPYO_FRAME_BYE, g_variant_new ("(s)", "123456789"), 0);
    g_autoptr(GBytes) frame2 = tlspyo_frame_encode (TLSPYO_FRAME_BYE, g_variant_new ("(s)", "1234567890"), 0);

    collector_init (&c);
    g_assert_true (tlspyo_frame_decoder_feed (dec3, g_bytes_get_data (frame, NULL),
                                              g_bytes_get_size (frame), collect_cb, &c, NULL));
    g_assert_cmpuint (c.frames->len, ==, 1);
    collector_clear (&c);
    expect_protocol_error (dec3, g_bytes_get_data (frame2, NULL), g_bytes_get_size (frame2),
                           "frame metadata of 11 bytes exceeds the limit of 10 bytes");
  }
}

static void
test_error_body_too_large (void)
{
  const guint64 huge[] = {
    G_GUINT64_CONSTANT (1) << 63,
    G_MAXUINT64,
    MiB + 1,
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (huge); i++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, MiB, TLSPYO_FRAME_MASK_ALL);
      guint8 h[TLSPYO_FRAME_HEADER_SIZE];
      g_autofree char *message = g_strdup_printf ("object of %" G_GUINT64_FORMAT " bytes exceeds the limit of 1048576 bytes", huge[i]);

      /* Fails on the header alone (under ASan, a 2^63 allocation would abort). */
      raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_OBJECT, 0, 8, huge[i]);
      expect_protocol_error (dec, h, sizeof h, message);
    }

  /* Handshake limits: no body at all. */
  {
    g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0, TLSPYO_FRAME_MASK_ALL);
    g_autoptr(GByteArray) stream = g_byte_array_new ();
    g_autoptr(GBytes) body = append_frame (stream, TLSPYO_FRAME_DELIVER,
                                           sample_meta (TLSPYO_FRAME_DELIVER, 1),
                                           sample_object (1));

    g_assert_nonnull (body);
    expect_protocol_error (dec, stream->data, stream->len, "exceeds the limit of 0 bytes");
  }
}

static void
test_error_body_presence (void)
{
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec2 = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec3 = open_decoder ();
  g_autoptr(TlspyoFrameDecoder) dec4 = open_decoder ();
  guint8 h[TLSPYO_FRAME_HEADER_SIZE];

  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_BYE, 0, 4, 1);
  expect_protocol_error (dec, h, sizeof h, "BYE frame must not have a body, but announces 1 bytes");

  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_ACK, 0, 8, G_MAXUINT64);
  expect_protocol_error (dec2, h, sizeof h, "ACK frame must not have a body");

  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_OBJECT, 0, 8, 0);
  expect_protocol_error (dec3, h, sizeof h, "OBJECT frame body of 0 bytes is too short");

  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, TLSPYO_FRAME_DELIVER, 0, 8, 1);
  expect_protocol_error (dec4, h, sizeof h, "DELIVER frame body of 1 bytes is too short");
}

static void
expect_bad_meta (TlspyoFrameType  type,
                 const void      *meta,
                 gsize            meta_len,
                 const char      *message)
{
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  guint8 h[TLSPYO_FRAME_HEADER_SIZE];

  raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, type, 0, meta_len,
              tlspyo_frame_type_has_body (type) ? 3 : 0);
  g_byte_array_append (stream, h, sizeof h);
  g_byte_array_append (stream, meta, meta_len);
  /* A valid body, so only the metadata is at fault. */
  if (tlspyo_frame_type_has_body (type))
    g_byte_array_append (stream, (const guint8 *) "\0as", 3);

  expect_protocol_error (dec, stream->data, stream->len, message);
}

static void
test_error_bad_meta (void)
{
  guint t;

  /* Zero-length metadata fits none of the tuple types. */
  for (t = TLSPYO_FRAME_HELLO; t <= TLSPYO_FRAME_TYPE_LAST; t++)
    {
      g_autofree char *message = g_strdup_printf ("%s frame has no metadata",
                                                  tlspyo_frame_type_to_string (t));
      expect_bad_meta (t, "", 0, message);
    }

  /* String without its NUL. */
  expect_bad_meta (TLSPYO_FRAME_BYE, "abc", 3, "BYE frame metadata is not a valid “(s)” value");
  /* Junk after the string's NUL: deserializable, but not normal form. */
  expect_bad_meta (TLSPYO_FRAME_BYE, "a\0\0", 3, "BYE frame metadata is not a valid “(s)” value");
  /* Wrong size for a fixed-size type. */
  expect_bad_meta (TLSPYO_FRAME_ACK, "\1\2\3\4", 4, "not a valid “(t)” value");
  expect_bad_meta (TLSPYO_FRAME_ACK, "\1\2\3\4\5\6\7\10\11", 9, "not a valid “(t)” value");
  /* Metadata of another frame type. */
  {
    g_autoptr(GVariant) v = g_variant_ref_sink (sample_meta (TLSPYO_FRAME_NOTIFY, 3));

    expect_bad_meta (TLSPYO_FRAME_ACK, g_variant_get_data (v), g_variant_get_size (v),
                     "ACK frame metadata is not a valid “(t)” value");
  }
  /* Garbage. */
  expect_bad_meta (TLSPYO_FRAME_OBJECT, "\xff\xff\xff\xff\xff\xff\xff", 7, "OBJECT frame metadata is not a valid");
  expect_bad_meta (TLSPYO_FRAME_AUTH, "\x00\x01\x02\x03\x04\x05\x06\x07\xf0", 9, "AUTH frame metadata is not a valid");
  expect_bad_meta (TLSPYO_FRAME_REFUSED, "\x01\0\0\0\xc3\x28\0", 7, "REFUSED frame metadata is not a valid");
}

static void
test_error_bad_trailer (void)
{
  static const struct {
    const char *body;
    gsize       len;
  } cases[] = {
    { "\x01\x02\0!", 4 },
    { "\x01\x02\x03\x04", 4 },
    { "abc\0", 4 },
    { "\0*", 2 },
    { "\0(i", 3 },
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GBytes) head = tlspyo_frame_encode (TLSPYO_FRAME_OBJECT,
                                                    sample_meta (TLSPYO_FRAME_OBJECT, 0),
                                                    cases[i].len);
      g_autoptr(GByteArray) stream = g_byte_array_new ();
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
      g_autoptr(TlspyoFrameDecoder) dec2 = open_decoder ();
      g_autoptr(GError) error = NULL;
      gsize n_missing;
      guint8 *space;
      Collector c;

      /* Through feed(). */
      g_byte_array_append (stream, g_bytes_get_data (head, NULL), g_bytes_get_size (head));
      g_byte_array_append (stream, (const guint8 *) cases[i].body, cases[i].len);
      expect_protocol_error (dec, stream->data, stream->len, "OBJECT frame carries an invalid object");

      /* Through body_space()/commit_body(). */
      collector_init (&c);
      g_assert_true (tlspyo_frame_decoder_feed (dec2, g_bytes_get_data (head, NULL),
                                                g_bytes_get_size (head), collect_cb, &c, &error));
      g_assert_no_error (error);
      space = tlspyo_frame_decoder_body_space (dec2, &n_missing);
      g_assert_nonnull (space);
      g_assert_cmpuint (n_missing, ==, cases[i].len);
      memcpy (space, cases[i].body, cases[i].len);
      g_assert_false (tlspyo_frame_decoder_commit_body (dec2, n_missing, collect_cb, &c, &error));
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
      g_assert_nonnull (strstr (error->message, "invalid object"));
      g_assert_cmpuint (c.frames->len, ==, 0);
      g_clear_error (&error);

      /* And refuses more, through either door. */
      g_assert_false (tlspyo_frame_decoder_commit_body (dec2, 0, collect_cb, &c, &error));
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
      g_clear_error (&error);
      g_assert_false (tlspyo_frame_decoder_feed (dec2, (const guint8 *) "T", 1, collect_cb, &c, &error));
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
      collector_clear (&c);
    }
}

/* A trailer that is fine but data that does not fit the type: GVariant would
 * hand receivers "()" instead, so the decoder (which the relay uses to
 * forward objects unopened) refuses it. */
static void
test_error_body_does_not_fit (void)
{
  static const struct {
    const char *body;
    gsize       len;
  } cases[] = {
    { "\x01\x02\x03\0u", 5 },
    { "\x01\x02\x03\x04\x05\x06\x07\0t", 9 },
    { "\0(yy)", 5 },
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GBytes) head = tlspyo_frame_encode (TLSPYO_FRAME_DELIVER, g_variant_new ("(stt)", "g", (guint64) 1, (guint64) 1),
                                                    cases[i].len);
      g_autoptr(GByteArray) stream = g_byte_array_new ();
      g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();

      g_assert_true (tlspyo_object_body_check ((const guint8 *) cases[i].body, cases[i].len, NULL));
      g_byte_array_append (stream, g_bytes_get_data (head, NULL), g_bytes_get_size (head));
      g_byte_array_append (stream, (const guint8 *) cases[i].body, cases[i].len);
      expect_protocol_error (dec, stream->data, stream->len, "malformed");
    }
}

/* Errors may be ignored (error == NULL) and still stop the decoder. */
static void
test_error_null_gerror (void)
{
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  Collector c;

  collector_init (&c);
  g_assert_false (tlspyo_frame_decoder_feed (dec, (const guint8 *) "XXXX", 4, collect_cb, &c, NULL));
  g_assert_false (tlspyo_frame_decoder_feed (dec, (const guint8 *) "XXXX", 4, collect_cb, &c, NULL));
  collector_clear (&c);
}

/* Fuzzing */

static void
fuzz_one (const guint8 *data,
          gsize         len,
          guint         stats[3])
{
  g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (4096, 64 * 1024, TLSPYO_FRAME_MASK_ALL);
  g_autoptr(GError) error = NULL;
  gsize pos = 0;
  gboolean ok = TRUE;
  guint i;
  Collector c;

  collector_init (&c);
  c.dec = dec;

  while (ok && pos < len)
    {
      gsize n_missing;
      guint8 *space = tlspyo_frame_decoder_body_space (dec, &n_missing);
      /* Not inside MIN(), which would draw twice. */
      gsize n = g_test_rand_int_range (1, 64);

      n = MIN (n, len - pos);

      if (space != NULL && g_test_rand_bit ())
        {
          n = MIN (n, n_missing);
          memcpy (space, data + pos, n);
          ok = tlspyo_frame_decoder_commit_body (dec, n, collect_cb, &c, &error);
        }
      else
        {
          ok = tlspyo_frame_decoder_feed (dec, data + pos, n, collect_cb, &c, &error);
        }
      pos += n;
    }

  if (ok)
    {
      g_assert_no_error (error);
      /* Waiting for more: whatever was not delivered is held. */
      g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), <=, len);
      stats[c.frames->len > 0 ? 1 : 0]++;
    }
  else
    {
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      stats[2]++;
    }

  /* Whatever came out must be safe to use. */
  for (i = 0; i < c.frames->len; i++)
    {
      Received *r = collected (&c, i);
      g_autofree char *text = g_variant_print (r->meta, FALSE);

      g_assert_true (g_utf8_validate (text, -1, NULL));
      if (r->body != NULL)
        {
          g_autoptr(GVariant) object = NULL;
          g_autoptr(GError) obj_error = NULL;

          /* The decoder lets through only bodies a receiver can open. */
          object = tlspyo_object_from_body (r->body, &obj_error);
          g_assert_no_error (obj_error);
          g_assert_nonnull (object);
          {
            g_autofree char *otext = g_variant_print (object, TRUE);

            g_assert_true (g_utf8_validate (otext, -1, NULL));
          }
        }
    }

  collector_clear (&c);
}

static void
test_random_garbage (void)
{
  guint stats[3] = { 0, 0, 0 };  /* waiting, delivered frames, error */
  guint iter;

  for (iter = 0; iter < 2000; iter++)
    {
      g_autoptr(GByteArray) buf = g_byte_array_new ();
      guint mode = iter % 4;
      gsize len = g_test_rand_int_range (0, 300);
      gsize i;

      if (mode == 1 || mode == 2)
        {
          /* A plausible header, so the rules past the first bytes get hit. */
          guint8 h[TLSPYO_FRAME_HEADER_SIZE];
          TlspyoFrameType t = g_test_rand_int_range (0, TLSPYO_FRAME_TYPE_LAST + 2);
          guint32 meta_len = g_test_rand_int_range (0, mode == 1 ? 64 : 8000);
          guint64 body_len = g_test_rand_bit () ? (guint64) g_test_rand_int_range (0, 200)
                                                : ((guint64) (guint32) g_test_rand_int () << 32 | (guint32) g_test_rand_int ());

          raw_header (h, TLSPYO_FRAME_MAGIC, TLSPYO_PROTOCOL_VERSION, t,
                      g_test_rand_int_range (0, 10) == 0 ? 1 : 0, meta_len, body_len);
          g_byte_array_append (buf, h, sizeof h);
        }

      if (mode == 3)
        {
          /* Valid frames with a few bytes flipped, or cut short. */
          guint n_frames = g_test_rand_int_range (1, 4);
          guint flips = g_test_rand_int_range (0, 4);

          for (i = 0; i < n_frames; i++)
            {
              TlspyoFrameType t = g_test_rand_int_range (TLSPYO_FRAME_HELLO, TLSPYO_FRAME_TYPE_LAST + 1);
              g_autoptr(GBytes) body = NULL;

              body = append_frame (buf, t, sample_meta (t, g_test_rand_int ()),
                                   tlspyo_frame_type_has_body (t) ? sample_object (g_test_rand_int ()) : NULL);
            }
          for (i = 0; i < flips && buf->len > 0; i++)
            buf->data[g_test_rand_int_range (0, buf->len)] = g_test_rand_int_range (0, 256);
          if (g_test_rand_bit ())
            g_byte_array_set_size (buf, g_test_rand_int_range (0, buf->len + 1));
        }
      else
        {
          for (i = 0; i < len; i++)
            {
              guint8 b = g_test_rand_int_range (0, 256);
              g_byte_array_append (buf, &b, 1);
            }
        }

      fuzz_one (buf->data, buf->len, stats);
    }

  g_test_message ("random buffers: %u waiting, %u delivered frames, %u errors",
                  stats[0], stats[1], stats[2]);
  /* The generator must reach past the header checks. */
  g_assert_cmpuint (stats[1], >, 0);
  g_assert_cmpuint (stats[2], >, 0);
}

/* Callback control */

static void
test_stop (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  gsize n_missing;
  guint i;
  Collector c;

  for (i = 0; i < 5; i++)
    append_frame (stream, TLSPYO_FRAME_NOTIFY, sample_meta (TLSPYO_FRAME_NOTIFY, i), NULL);

  collector_init (&c);
  c.stop_after = 2;
  g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, stream->len, collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 2);
  {
    g_autoptr(GVariant) second = g_variant_ref_sink (sample_meta (TLSPYO_FRAME_NOTIFY, 1));

    g_assert_true (g_variant_equal (collected (&c, 1)->meta, second));
  }

  /* The rest of the chunk, and anything later, is dropped. */
  g_assert_true (tlspyo_frame_decoder_feed (dec, stream->data, stream->len, collect_cb, &c, &error));
  g_assert_true (tlspyo_frame_decoder_feed (dec, (const guint8 *) "garbage", 7, collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 2);
  g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (dec), ==, 0);
  g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
  collector_clear (&c);
}

/* Stopping on a frame that was completed by commit_body(). */
static void
test_stop_in_commit (void)
{
  g_autoptr(GVariant) object = g_variant_ref_sink (sample_object (9));
  g_autoptr(GBytes) body = tlspyo_object_to_bytes (object);
  g_autoptr(GBytes) head = tlspyo_frame_encode (TLSPYO_FRAME_DELIVER, g_variant_new ("(stt)", "g", (guint64) 1, (guint64) 1),
                                                g_bytes_get_size (body));
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  gsize n_missing;
  guint8 *space;
  Collector c;

  collector_init (&c);
  c.stop_after = 1;
  g_assert_true (tlspyo_frame_decoder_feed (dec, g_bytes_get_data (head, NULL), g_bytes_get_size (head),
                                            collect_cb, &c, &error));
  space = tlspyo_frame_decoder_body_space (dec, &n_missing);
  g_assert_nonnull (space);
  memcpy (space, g_bytes_get_data (body, NULL), n_missing);
  g_assert_true (tlspyo_frame_decoder_commit_body (dec, n_missing, collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 1);

  /* Stopped: commit is a no-op, feed drops input. */
  g_assert_null (tlspyo_frame_decoder_body_space (dec, &n_missing));
  g_assert_true (tlspyo_frame_decoder_commit_body (dec, 0, collect_cb, &c, &error));
  g_assert_true (tlspyo_frame_decoder_feed (dec, g_bytes_get_data (head, NULL), g_bytes_get_size (head),
                                            collect_cb, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.frames->len, ==, 1);
  collector_clear (&c);
}

/* The handshake: strict limits until AUTH, full ones from the next frame on,
 * even within the same chunk. */
static void
test_set_limits_in_callback (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(GVariantBuilder) builder = g_variant_builder_new (G_VARIANT_TYPE ("a{si}"));
  g_autoptr(GVariant) big_meta = NULL;
  g_autoptr(GBytes) body = NULL;
  guint handshake = TLSPYO_FRAME_BIT (TLSPYO_FRAME_HELLO) | TLSPYO_FRAME_BIT (TLSPYO_FRAME_AUTH);
  guint i;

  /* Metadata larger than the handshake limit. */
  for (i = 0; i < 1000; i++)
    {
      g_autofree char *group = g_strdup_printf ("group-%04u", i);
      g_variant_builder_add (builder, "{si}", group, (gint32) i);
    }
  big_meta = g_variant_ref_sink (g_variant_new ("(@a{si})", g_variant_builder_end (builder)));
  g_assert_cmpuint (g_variant_get_size (big_meta), >, TLSPYO_FRAME_MAX_META_HANDSHAKE);

  append_frame (stream, TLSPYO_FRAME_HELLO, sample_meta (TLSPYO_FRAME_HELLO, 0), NULL);
  append_frame (stream, TLSPYO_FRAME_AUTH, sample_meta (TLSPYO_FRAME_AUTH, 0), NULL);
  body = append_frame (stream, TLSPYO_FRAME_OBJECT, big_meta, sample_object (3));
  append_frame (stream, TLSPYO_FRAME_NOTIFY, sample_meta (TLSPYO_FRAME_NOTIFY, 0), NULL);

  /* In one chunk and byte by byte. */
  for (i = 0; i < 2; i++)
    {
      g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0, handshake);
      g_autoptr(GError) error = NULL;
      Collector c;

      collector_init (&c);
      c.dec = dec;
      c.open_after = TLSPYO_FRAME_AUTH;
      g_assert_true (feed_in_chunks (dec, stream->data, stream->len, i == 0 ? stream->len : 1, &c, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (c.frames->len, ==, 4);
      g_assert_cmpint (collected (&c, 2)->type, ==, TLSPYO_FRAME_OBJECT);
      g_assert_true (g_variant_equal (collected (&c, 2)->meta, big_meta));
      assert_bytes_equal (collected (&c, 2)->body, body);
      g_assert_cmpint (collected (&c, 3)->type, ==, TLSPYO_FRAME_NOTIFY);
      collector_clear (&c);
    }

  /* Without the switch, the OBJECT is refused. */
  {
    g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, 0, handshake);

    g_assert_cmpuint (expect_protocol_error (dec, stream->data, stream->len, "unexpected OBJECT frame"), ==, 2);
  }

  /* Allowing the type is not enough: the metadata limit still holds. */
  {
    g_autoptr(TlspyoFrameDecoder) dec = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META_HANDSHAKE, MiB,
                                                                  TLSPYO_FRAME_MASK_ALL);

    g_assert_cmpuint (expect_protocol_error (dec, stream->data, stream->len, "exceeds the limit of 4096 bytes"), ==, 2);
  }
}

/* Tightening works the same way: after BYE, nothing more is allowed. */
static gboolean
close_after_bye_cb (const TlspyoFrame *frame,
                    gpointer           user_data)
{
  Collector *c = user_data;

  collect_cb (frame, user_data);
  if (frame->type == TLSPYO_FRAME_BYE)
    tlspyo_frame_decoder_set_limits (c->dec, TLSPYO_FRAME_MAX_META, 0, 0);
  return TRUE;
}

static void
test_set_limits_tighten (void)
{
  g_autoptr(GByteArray) stream = g_byte_array_new ();
  g_autoptr(TlspyoFrameDecoder) dec = open_decoder ();
  g_autoptr(GError) error = NULL;
  Collector c;

  append_frame (stream, TLSPYO_FRAME_BYE, sample_meta (TLSPYO_FRAME_BYE, 0), NULL);
  append_frame (stream, TLSPYO_FRAME_ACK, sample_meta (TLSPYO_FRAME_ACK, 0), NULL);

  collector_init (&c);
  c.dec = dec;
  g_assert_false (tlspyo_frame_decoder_feed (dec, stream->data, stream->len, close_after_bye_cb, &c, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "unexpected ACK frame"));
  g_assert_cmpuint (c.frames->len, ==, 1);
  collector_clear (&c);
}

/* Group names */

static void
expect_group_invalid (const char *group,
                      const char *message)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (tlspyo_group_name_check (group, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  if (strstr (error->message, message) == NULL)
    g_error ("error “%s” does not mention “%s”", error->message, message);
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
}

static void
test_group_name (void)
{
  g_autofree char *max = g_strnfill (255, 'a');
  g_autofree char *too_long = g_strnfill (256, 'a');
  g_autoptr(GString) cjk_max = g_string_new (NULL);
  g_autoptr(GString) cjk_long = g_string_new (NULL);
  const char *valid[] = {
    "a", "workers", "group with spaces", "日本語", "émile", "emoji 🎉",
    "a.b-c_d/e:f", "\xc2\xa0", /* U+00A0: a space, not a control */
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (valid); i++)
    {
      g_autoptr(GError) error = NULL;

      g_assert_true (tlspyo_group_name_check (valid[i], &error));
      g_assert_no_error (error);
    }
  g_assert_true (tlspyo_group_name_check (max, NULL));

  /* The limit is in bytes, not characters: 85 × 3 = 255, 86 × 3 = 258. */
  for (i = 0; i < 85; i++)
    g_string_append (cjk_max, "日");
  g_string_append (cjk_long, cjk_max->str);
  g_string_append (cjk_long, "日");
  g_assert_true (tlspyo_group_name_check (cjk_max->str, NULL));

  expect_group_invalid (NULL, "no group name given");
  expect_group_invalid ("", "group name is empty: give each group a name of 1 to 255 bytes");
  expect_group_invalid (too_long, "group name of 256 bytes is too long");
  expect_group_invalid (cjk_long->str, "group name of 258 bytes is too long");
  expect_group_invalid ("\xff", "not valid UTF-8");
  expect_group_invalid ("abc\xc3", "not valid UTF-8");
  expect_group_invalid ("a\xc3\x28", "not valid UTF-8");
  expect_group_invalid ("\xed\xa0\x80", "not valid UTF-8");  /* a UTF-16 surrogate */
  expect_group_invalid ("\xc0\xaf", "not valid UTF-8");      /* overlong '/' */
  expect_group_invalid ("a\x01" "b", "control character U+0001 at offset 1");
  expect_group_invalid ("tab\there", "U+0009");
  expect_group_invalid ("line\n", "U+000A");
  expect_group_invalid ("del\x7f", "U+007F");
  expect_group_invalid ("nel\xc2\x85", "U+0085");

  /* Ignorable error. */
  g_assert_false (tlspyo_group_name_check ("", NULL));
}

static GVariant *
nest_in_variants (GVariant *v,
                  guint     depth)
{
  for (guint i = 0; i < depth; i++)
    v = g_variant_new_variant (v);
  return v;
}

/* What a sender checks before sending: the same verdict the relay's decoder
 * would give, without a copy for common types. */
static void
test_sendable (void)
{
  struct {
    GVariant *object;
    gboolean  ok;
  } cases[] = {
    { g_variant_new_string ("hello"), TRUE },
    { g_variant_new_parsed ("{'a': <1>, 'b': <[1.5, 2.5]>}"), TRUE },
    { g_variant_new ("(ii)", 1, 2), TRUE },
    { g_variant_new_parsed ("<('a', ('b', <('c', <{'d': <[1, 2]>}>)>))>"), TRUE },
    { g_variant_new_uint32 (7), TRUE },
    { nest_in_variants (g_variant_new_int32 (1), 16), TRUE },
    { nest_in_variants (g_variant_new_int32 (1), 200), FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GBytes) data = NULL;
      g_autoptr(GBytes) trailer = NULL;
      g_autoptr(GError) error = NULL;
      gboolean ok;

      g_variant_ref_sink (cases[i].object);
      ok = tlspyo_object_check_depth (cases[i].object, &error);
      if (ok)
        {
          tlspyo_object_to_body (cases[i].object, &data, &trailer);
          ok = tlspyo_object_body_pieces_check (data, trailer, &error);
        }
      g_variant_unref (cases[i].object);
      g_assert_cmpint (ok, ==, cases[i].ok);
      if (ok)
        g_assert_no_error (error);
      else
        g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
    }
}

int
main (int    argc,
      char **argv)
{
  tlspyo_test_init (&argc, &argv);

  g_test_add_func ("/frame/types", test_types);
  g_test_add_func ("/frame/encode/header-layout", test_header_layout);
  g_test_add_func ("/frame/encode/layout", test_encode_layout);
  g_test_add_func ("/frame/encode/non-floating", test_encode_non_floating);
  g_test_add_func ("/frame/encode/non-normal-meta", test_encode_non_normal_meta);
  g_test_add_func ("/frame/encode/serialized-same", test_encode_serialized_same);
  g_test_add_data_func ("/frame/encode/wrong-meta-type", &append_wrong_meta_type,
                        test_append_misuse);
  g_test_add_data_func ("/frame/encode/body-on-bodyless", &append_body_on_bodyless,
                        test_append_misuse);
  g_test_add_func ("/frame/decode/roundtrip", test_roundtrip_all_types);
  g_test_add_func ("/frame/decode/many-in-one-chunk", test_many_frames_one_chunk);
  g_test_add_func ("/frame/decode/byte-at-a-time", test_byte_at_a_time);
  g_test_add_func ("/frame/decode/split-everywhere", test_split_everywhere);
  g_test_add_func ("/frame/decode/truncated-waits", test_truncated_waits);
  g_test_add_func ("/frame/decode/empty-feed", test_feed_empty);
  g_test_add_func ("/frame/decode/large-body-zero-copy", test_large_body_zero_copy);
  g_test_add_func ("/frame/object/types", test_object_types);
  g_test_add_func ("/frame/object/non-normal", test_object_non_normal);
  g_test_add_func ("/frame/object/floating", test_object_floating);
  g_test_add_func ("/frame/object/unaligned", test_object_unaligned);
  g_test_add_func ("/frame/object/bad-body", test_object_bad_body);
  g_test_add_func ("/frame/object/mismatch", test_object_mismatch);
  g_test_add_func ("/frame/error/bad-magic", test_error_bad_magic);
  g_test_add_func ("/frame/error/version", test_error_version);
  g_test_add_func ("/frame/error/type", test_error_type);
  g_test_add_func ("/frame/error/flags", test_error_flags);
  g_test_add_func ("/frame/error/disallowed-type", test_error_disallowed);
  g_test_add_func ("/frame/error/meta-too-large", test_error_meta_too_large);
  g_test_add_func ("/frame/error/body-too-large", test_error_body_too_large);
  g_test_add_func ("/frame/error/body-presence", test_error_body_presence);
  g_test_add_func ("/frame/error/bad-meta", test_error_bad_meta);
  g_test_add_func ("/frame/error/bad-trailer", test_error_bad_trailer);
  g_test_add_func ("/frame/error/body-does-not-fit", test_error_body_does_not_fit);
  g_test_add_func ("/frame/error/null-gerror", test_error_null_gerror);
  g_test_add_func ("/frame/error/random-garbage", test_random_garbage);
  g_test_add_func ("/frame/callback/stop", test_stop);
  g_test_add_func ("/frame/callback/stop-in-commit", test_stop_in_commit);
  g_test_add_func ("/frame/callback/set-limits", test_set_limits_in_callback);
  g_test_add_func ("/frame/callback/set-limits-tighten", test_set_limits_tighten);
  g_test_add_func ("/frame/group-name", test_group_name);
  g_test_add_func ("/frame/object/sendable", test_sendable);

  return g_test_run ();
}
