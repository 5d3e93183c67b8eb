/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-frame-private.h"
#include "tlspyo-error.h"

#include <string.h>

/* A limit of the protocol, not of GLib: it keeps group names cheap to carry in
 * every frame's metadata and to print in logs. */
#define GROUP_NAME_MAX_BYTES 255

/* Indexed by TlspyoFrameType; keep in step with the enum and docs/protocol.md. */
static const struct {
  const char *name;
  const char *meta_type;
  gboolean    has_body;
} frame_types[] = {
  [TLSPYO_FRAME_HELLO]     = { "HELLO",     "(uay)",   FALSE },
  [TLSPYO_FRAME_CHALLENGE] = { "CHALLENGE", "(ayayu)", FALSE },
  [TLSPYO_FRAME_AUTH]      = { "AUTH",      "(ayas)",  FALSE },
  [TLSPYO_FRAME_WELCOME]   = { "WELCOME",   "(ay)",    FALSE },
  [TLSPYO_FRAME_REFUSED]   = { "REFUSED",   "(us)",    FALSE },
  [TLSPYO_FRAME_OBJECT]    = { "OBJECT",    "(a{si})", TRUE  },
  [TLSPYO_FRAME_NOTIFY]    = { "NOTIFY",    "(si)",    FALSE },
  [TLSPYO_FRAME_ACK]       = { "ACK",       "(t)",     FALSE },
  [TLSPYO_FRAME_DELIVER]   = { "DELIVER",   "(stt)",   TRUE  },
  [TLSPYO_FRAME_BYE]       = { "BYE",       "(s)",     FALSE },
  [TLSPYO_FRAME_PING]      = { "PING",      "(t)",     FALSE },
  [TLSPYO_FRAME_PONG]      = { "PONG",      "(t)",     FALSE },
  [TLSPYO_FRAME_PRODUCED]  = { "PRODUCED",  "(sb)",    TRUE  },
  [TLSPYO_FRAME_DENIED]    = { "DENIED",    "(uss)",   FALSE },
  [TLSPYO_FRAME_HELLO_USER] = { "HELLO_USER", "(uays)", FALSE },
  [TLSPYO_FRAME_SESSION]   = { "SESSION",   "(ayta{st}a{s(tt)})", FALSE },
  [TLSPYO_FRAME_RESUMED]   = { "RESUMED",   "(ttb)",   FALSE },
  [TLSPYO_FRAME_TAKEN]     = { "TAKEN",     "(a{su})", FALSE },
};

G_STATIC_ASSERT (G_N_ELEMENTS (frame_types) == TLSPYO_FRAME_TYPE_LAST + 1);

static inline gboolean
frame_type_is_known (guint type)
{
  return type >= TLSPYO_FRAME_HELLO && type <= TLSPYO_FRAME_TYPE_LAST;
}

/* Returns NULL for an unknown type rather than warning: callers use it on
 * values that came from the network. */
const GVariantType *
tlspyo_frame_meta_type (TlspyoFrameType type)
{
  if (!frame_type_is_known (type))
    return NULL;

  /* The strings are constant and valid, so G_VARIANT_TYPE()'s check is
   * wasted work on this path. */
  return (const GVariantType *) frame_types[type].meta_type;
}

gboolean
tlspyo_frame_type_has_body (TlspyoFrameType type)
{
  return frame_type_is_known (type) && frame_types[type].has_body;
}

const char *
tlspyo_frame_type_to_string (TlspyoFrameType type)
{
  if (!frame_type_is_known (type))
    return "unknown";

  return frame_types[type].name;
}

/* Byte order */

/* Between the wire's byte order (little-endian) and the host's, either way:
 * a swapped copy on big-endian hosts, @owned itself on the others. Takes a
 * full reference and returns one. */
static GVariant *
swap_wire_order (GVariant *owned)
{
  if (G_BYTE_ORDER == G_BIG_ENDIAN)
    {
      GVariant *swapped = g_variant_take_ref (g_variant_byteswap (owned));

      g_variant_unref (owned);
      owned = swapped;
    }
  return owned;
}

/* @owned (a full reference) as it must go on the wire: in normal form,
 * then little-endian. Values built with g_variant_new() are in normal form
 * already and this costs nothing for them; only deserialized ones, which
 * may not be, are copied. Returns a full reference. */
static GVariant *
wire_form (GVariant *owned)
{
  if (!g_variant_is_normal_form (owned))
    {
      GVariant *normal = g_variant_get_normal_form (owned);

      g_variant_unref (owned);
      owned = normal;
    }
  return swap_wire_order (owned);
}

/* Encoding */

void
tlspyo_frame_write_header (guint8           header[TLSPYO_FRAME_HEADER_SIZE],
                           TlspyoFrameType  type,
                           guint32          meta_len,
                           guint64          body_len)
{
  guint i;

  g_return_if_fail (header != NULL);

  header[0] = TLSPYO_FRAME_MAGIC;
  header[1] = TLSPYO_PROTOCOL_VERSION;
  header[2] = (guint8) type;
  header[3] = 0;

  /* Shifts rather than GUINT32_TO_LE + memcpy: the same code is then right
   * on every host, with nothing to get wrong on big-endian ones. */
  for (i = 0; i < 4; i++)
    header[4 + i] = (guint8) (meta_len >> (8 * i));
  for (i = 0; i < 8; i++)
    header[8 + i] = (guint8) (body_len >> (8 * i));
}

void
tlspyo_frame_append (GByteArray      *out,
                     TlspyoFrameType  type,
                     GVariant        *meta,
                     guint64          body_len)
{
  g_autoptr(GVariant) owned = NULL;
  gsize meta_len;
  guint old_len;
  guint8 *dest;

  g_return_if_fail (out != NULL);
  g_return_if_fail (meta != NULL);

  /* Sink first so that a floating meta is not leaked by a failed check. */
  owned = g_variant_ref_sink (meta);

  g_return_if_fail (frame_type_is_known (type));
  g_return_if_fail (g_variant_is_of_type (owned, tlspyo_frame_meta_type (type)));
  g_return_if_fail (tlspyo_frame_type_has_body (type) ? body_len >= 2 : body_len == 0);

  /* The peer rejects metadata that is not in normal form. */
  owned = wire_form (owned);

  meta_len = g_variant_get_size (owned);
  g_return_if_fail (meta_len <= G_MAXUINT32);

  old_len = out->len;
  g_byte_array_set_size (out, old_len + TLSPYO_FRAME_HEADER_SIZE + meta_len);
  tlspyo_frame_write_header (out->data + old_len, type, (guint32) meta_len, body_len);

  /* g_variant_store() serializes in place, which needs a destination aligned
   * for the type (8 at most); appending after other data may not give one.
   * In place is why this is not tlspyo_frame_serialize_meta() followed by
   * tlspyo_frame_append_serialized(): that serializes into a buffer of its
   * own first, one more allocation for every frame. */
  dest = out->data + old_len + TLSPYO_FRAME_HEADER_SIZE;
  if (((guintptr) dest & 7) == 0)
    g_variant_store (owned, dest);
  else if (meta_len > 0)
    memcpy (dest, g_variant_get_data (owned), meta_len);
}

GBytes *
tlspyo_frame_serialize_meta (TlspyoFrameType  type,
                             GVariant        *meta)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (meta);

  g_return_val_if_fail (frame_type_is_known (type), NULL);
  g_return_val_if_fail (g_variant_is_of_type (owned, tlspyo_frame_meta_type (type)), NULL);

  owned = wire_form (owned);
  return g_variant_get_data_as_bytes (owned);
}

void
tlspyo_frame_append_serialized (GByteArray      *out,
                                TlspyoFrameType  type,
                                GBytes          *meta,
                                guint64          body_len)
{
  gsize meta_len = 0;
  const guint8 *data = g_bytes_get_data (meta, &meta_len);
  guint8 header[TLSPYO_FRAME_HEADER_SIZE];

  tlspyo_frame_write_header (header, type, (guint32) meta_len, body_len);
  g_byte_array_append (out, header, sizeof header);
  g_byte_array_append (out, data, meta_len);
}

GBytes *
tlspyo_frame_encode (TlspyoFrameType  type,
                     GVariant        *meta,
                     guint64          body_len)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();

  tlspyo_frame_append (out, type, meta, body_len);

  /* tlspyo_frame_append() has already complained about bad arguments. */
  if (out->len == 0)
    return NULL;

  return g_byte_array_free_to_bytes (g_steal_pointer (&out));
}

/* Objects */

/* Consumes a floating ref, like most GLib calls taking a GVariant, so that
 * tlspyo_object_to_body (g_variant_new (...), ...) does not leak. Returns a
 * value in normal form, in little-endian byte order. */
static GVariant *
object_for_wire (GVariant *object)
{
  /* The receiver does not check the object's normal form (that would mean
   * walking all of it), and GVariant silently replaces what it cannot read
   * with default values: never send such data. */
  return wire_form (g_variant_ref_sink (object));
}

void
tlspyo_object_to_body (GVariant  *object,
                       GBytes   **data,
                       GBytes   **trailer)
{
  g_autoptr(GVariant) owned = NULL;
  const char *type_string;
  gsize type_len;
  guint8 *buf;

  g_return_if_fail (object != NULL);
  g_return_if_fail (data != NULL);
  g_return_if_fail (trailer != NULL);

  owned = object_for_wire (object);
  type_string = g_variant_get_type_string (owned);
  type_len = strlen (type_string);

  buf = g_malloc (type_len + 1);
  buf[0] = '\0';
  memcpy (buf + 1, type_string, type_len);

  *data = g_variant_get_data_as_bytes (owned);
  *trailer = g_bytes_new_take (buf, type_len + 1);
}

GBytes *
tlspyo_object_to_bytes (GVariant *object)
{
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) trailer = NULL;
  gsize data_len, trailer_len;
  guint8 *buf;

  g_return_val_if_fail (object != NULL, NULL);

  tlspyo_object_to_body (object, &data, &trailer);

  data_len = g_bytes_get_size (data);
  trailer_len = g_bytes_get_size (trailer);
  buf = g_malloc (data_len + trailer_len);
  if (data_len > 0)
    memcpy (buf, g_bytes_get_data (data, NULL), data_len);
  memcpy (buf + data_len, g_bytes_get_data (trailer, NULL), trailer_len);

  return g_bytes_new_take (buf, data_len + trailer_len);
}

static inline gboolean
is_type_char (guint8 c)
{
  /* strchr() would match the terminating NUL for c == 0. */
  return c != '\0' && strchr ("bynqiuxthdsogvam(){}*?r", c) != NULL;
}

/* Where the type string of a body starts, or NULL if there is no NUL byte
 * right before a run of type characters at its end. Stopping at the first
 * non-type character bounds the scan by the type string's length, not the
 * object's: a peer cannot make us walk 256 MiB looking for a NUL. */
static const guint8 *
body_find_type (const guint8 *body,
                gsize         len)
{
  const guint8 *p = body + len;

  while (p > body && is_type_char (p[-1]))
    p--;

  if (p == body || p[-1] != '\0')
    return NULL;

  return p;
}

/* Takes the object out of @body (whose type string was checked) exactly as
 * a receiver does. GVariant does not fail on a child that does not fit its
 * type (a fixed-size type with the wrong size, nesting too deep): it
 * substitutes "()", so the types are compared. Cheap whatever the size:
 * nothing is copied (on an aligned buffer) and the data is not walked. */
static GVariant *
body_unwrap (GBytes        *body,
             const guint8  *type_start,
             gboolean       native_order,
             GError       **error)
{
  g_autoptr(GVariant) wrapper = NULL;
  g_autoptr(GVariant) object = NULL;
  const guint8 *data;
  gsize len;

  data = g_bytes_get_data (body, &len);

  /* Untrusted: GVariant then checks every access against the data, which is
   * what makes it safe to hand out without a full validation pass. On an
   * aligned buffer this keeps a ref on @body rather than copying it. */
  wrapper = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE_VARIANT,
                                                          body, FALSE));
  /* Byte order does not change whether the data fits: only swap (a copy
   * of the whole object) for a caller that reads the values. */
  if (native_order)
    wrapper = swap_wire_order (wrapper);

  /* take_ref, not a plain assignment: when the child nests too deeply GLib
   * returns a fresh floating "()" instead of it. */
  object = g_variant_take_ref (g_variant_get_variant (wrapper));

  if (!g_variant_type_equal (g_variant_get_type (object),
                             (const GVariantType *) type_start))
    {
      gsize type_len = data + len - type_start;

      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                   "object of type “%.*s%s” is malformed: its %" G_GSIZE_FORMAT
                   " bytes of data do not fit the type, or it nests too deeply",
                   (int) MIN (type_len, 64), (const char *) type_start,
                   type_len > 64 ? "…" : "", len - type_len - 1);
      return NULL;
    }

  return g_steal_pointer (&object);
}

gboolean
tlspyo_object_body_check (const guint8  *body,
                          gsize          len,
                          GError       **error)
{
  const guint8 *type_start;
  const char *end;
  gsize type_len;

  g_return_val_if_fail (body != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (len < 2)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                   "object body of %" G_GSIZE_FORMAT " bytes is too short: "
                   "it must end with a NUL byte and a type string",
                   len);
      return FALSE;
    }

  if (body[len - 1] == '\0')
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                           "object body ends with a NUL byte instead of a type string");
      return FALSE;
    }

  type_start = body_find_type (body, len);
  if (type_start == NULL)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                           "object body does not end with a NUL byte and a type string");
      return FALSE;
    }

  type_len = body + len - type_start;
  if (!g_variant_type_string_scan ((const char *) type_start,
                                   (const char *) body + len, &end) ||
      end != (const char *) body + len)
    {
      /* Only type characters are left here, so printing them is safe; the
       * length is capped so that a hostile peer cannot flood the logs. */
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                   "object type string “%.*s%s” is not a valid GVariant type, "
                   "or nests too deeply",
                   (int) MIN (type_len, 64), (const char *) type_start,
                   type_len > 64 ? "…" : "");
      return FALSE;
    }

  /* Scanned above, so it is a complete type even without a terminating NUL. */
  if (!g_variant_type_is_definite ((const GVariantType *) type_start))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                   "object type “%.*s%s” is not definite: an object must have a "
                   "concrete type, without “*”, “?” or “r”",
                   (int) MIN (type_len, 64), (const char *) type_start,
                   type_len > 64 ? "…" : "");
      return FALSE;
    }

  return TRUE;
}

/* strpbrk (type, "sogam") for a type string that is not NUL-terminated
 * (it ends the body): whether it has a variable-size part. */
static gboolean
type_has_variable_part (const char *type,
                        gsize       len)
{
  for (gsize i = 0; i < len; i++)
    if (memchr ("sogam", type[i], 5) != NULL)
      return TRUE;
  return FALSE;
}

/* tlspyo_object_body_check(), and that the data fits the type. Cheap: the
 * data is not walked. */
static gboolean
body_check_fits (const guint8  *body,
                 gsize          len,
                 GError       **error)
{
  g_autoptr(GBytes) view = NULL;
  g_autoptr(GVariant) object = NULL;
  const char *type;
  gsize type_len;

  if (!tlspyo_object_body_check (body, len, error))
    return FALSE;

  /* GVariant substitutes a child only when its type nests deeper than it
   * reads, contains variants (whose own depth counts), or is fixed-size with
   * data of the wrong size. A short type without 'v' that is variable-size
   * (it contains a string, array or maybe) fits whatever its data: the
   * common case needs no allocation on the relay's hot path. */
  type = (const char *) body_find_type (body, len);
  type_len = (const char *) body + len - type;
  if (type_len < 64 && memchr (type, 'v', type_len) == NULL &&
      type_has_variable_part (type, type_len))
    return TRUE;

  view = g_bytes_new_static (body, len);
  object = body_unwrap (view, body_find_type (body, len), FALSE, error);
  return object != NULL;
}

/* GVariant reads a child of untrusted data only while the child's type
 * depth plus the depth of its parent stays under
 * G_VARIANT_MAX_RECURSION_DEPTH (128); below that it silently substitutes a
 * default value. An object travels inside a "v", so it sits at depth 1. */
#define MAX_READ_DEPTH 128

/* The nesting depth of the type starting at *type; advances past it. */
static guint
type_depth (const char **type)
{
  char c = *(*type)++;
  guint deepest = 0;

  switch (c)
    {
    case 'a':
    case 'm':
      return 1 + type_depth (type);
    case '(':
    case '{':
      while (**type != ')' && **type != '}')
        {
          guint d = type_depth (type);  /* not inside MAX(): it evaluates twice */
          deepest = MAX (deepest, d);
        }
      (*type)++;
      return 1 + deepest;
    default:
      return 1;
    }
}

static gboolean
value_depth_ok (GVariant *value,
                guint     depth)
{
  const char *type = g_variant_get_type_string (value);
  const char *cursor = type;
  GVariantIter iter;
  GVariant *child;

  if (type_depth (&cursor) + depth > MAX_READ_DEPTH)
    return FALSE;
  /* Without variants, the type bounds everything below. */
  if (strchr (type, 'v') == NULL)
    return TRUE;

  g_variant_iter_init (&iter, value);
  while ((child = g_variant_iter_next_value (&iter)) != NULL)
    {
      gboolean ok = value_depth_ok (child, depth + 1);

      g_variant_unref (child);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

gboolean
tlspyo_object_check_depth (GVariant  *object,
                           GError   **error)
{
  if (value_depth_ok (object, 1))
    return TRUE;
  g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
               "The object nests containers too deep for receivers to read (GVariant "
               "reads at most %d levels): flatten it", MAX_READ_DEPTH - 1);
  return FALSE;
}

gboolean
tlspyo_object_body_pieces_check (GBytes  *data,
                                 GBytes  *trailer,
                                 GError **error)
{
  gsize data_len, trailer_len;
  const guint8 *t = g_bytes_get_data (trailer, &trailer_len);
  g_autofree guint8 *whole = NULL;

  /* The same fast path as body_check_fits(): most types need no copy. */
  if (trailer_len >= 2 && trailer_len - 1 < 64 &&
      memchr (t + 1, 'v', trailer_len - 1) == NULL &&
      type_has_variable_part ((const char *) t + 1, trailer_len - 1) &&
      memchr (t + 1, '\0', trailer_len - 1) == NULL)
    return TRUE;

  g_bytes_get_data (data, &data_len);
  whole = g_malloc (data_len + trailer_len);
  if (data_len > 0)
    memcpy (whole, g_bytes_get_data (data, NULL), data_len);
  memcpy (whole + data_len, t, trailer_len);
  return body_check_fits (whole, data_len + trailer_len, error);
}

GVariant *
tlspyo_object_from_body (GBytes  *body,
                         GError **error)
{
  const guint8 *data;
  gsize len;

  g_return_val_if_fail (body != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  data = g_bytes_get_data (body, &len);
  if (!tlspyo_object_body_check (data, len, error))
    return NULL;

  return body_unwrap (body, body_find_type (data, len), TRUE, error);
}

/* Decoding */

typedef enum {
  DECODER_HEADER,
  DECODER_META,
  DECODER_BODY,
  /* The callback asked to stop: input is dropped from then on. */
  DECODER_STOPPED,
  /* A protocol error: the stream can no longer be trusted to be in step. */
  DECODER_FAILED,
} DecoderState;

struct _TlspyoFrameDecoder
{
  gsize         max_meta;
  guint64       max_body;
  guint32       allowed_types;

  DecoderState  state;
  gboolean      dispatching;

  guint8        header[TLSPYO_FRAME_HEADER_SIZE];
  gsize         header_fill;

  /* Of the current frame, once its header is complete. */
  TlspyoFrameType type;
  gsize         meta_len;
  gsize         body_len;

  guint8       *meta_buf;   /* reused from frame to frame */
  gsize         meta_buf_size;
  gsize         meta_fill;
  /* Consecutive frames mostly repeat their metadata (the same destination,
   * the same group): the last one of each type is reused, not parsed again. */
  GVariant     *last_meta[TLSPYO_FRAME_TYPE_LAST + 1];
  GVariant     *meta;       /* parsed, held while the body arrives */
  guint8       *body;       /* body_len bytes, allocated once */
  gsize         body_fill;

  GError       *failure;    /* handed out again on every later call */
};

TlspyoFrameDecoder *
tlspyo_frame_decoder_new (gsize   max_meta,
                          guint64 max_body,
                          guint32 allowed_types)
{
  TlspyoFrameDecoder *dec = g_new0 (TlspyoFrameDecoder, 1);

  dec->max_meta = max_meta;
  dec->max_body = max_body;
  dec->allowed_types = allowed_types;
  dec->state = DECODER_HEADER;

  return dec;
}

static void
decoder_clear_frame (TlspyoFrameDecoder *dec)
{
  /* Keep a small metadata buffer for the next frame, not a peer's 1 MiB. */
  if (dec->meta_buf_size > TLSPYO_FRAME_MAX_META_HANDSHAKE)
    {
      g_clear_pointer (&dec->meta_buf, g_free);
      dec->meta_buf_size = 0;
    }
  g_clear_pointer (&dec->meta, g_variant_unref);
  g_clear_pointer (&dec->body, g_free);
  dec->header_fill = 0;
  dec->meta_fill = 0;
  dec->body_fill = 0;
  dec->meta_len = 0;
  dec->body_len = 0;
}

void
tlspyo_frame_decoder_free (TlspyoFrameDecoder *dec)
{
  if (dec == NULL)
    return;

  /* Freeing from inside the callback would pull the decoder from under
   * the frame loop that is calling it. */
  g_return_if_fail (!dec->dispatching);

  decoder_clear_frame (dec);
  g_free (dec->meta_buf);
  for (guint i = 0; i < G_N_ELEMENTS (dec->last_meta); i++)
    g_clear_pointer (&dec->last_meta[i], g_variant_unref);
  g_clear_error (&dec->failure);
  g_free (dec);
}

void
tlspyo_frame_decoder_set_limits (TlspyoFrameDecoder *dec,
                                 gsize               max_meta,
                                 guint64             max_body,
                                 guint32             allowed_types)
{
  g_return_if_fail (dec != NULL);

  /* Only read when a header completes, so from inside the callback this
   * applies to the next frame, as the handshake needs. */
  dec->max_meta = max_meta;
  dec->max_body = max_body;
  dec->allowed_types = allowed_types;
}

static gboolean decoder_fail (TlspyoFrameDecoder *dec,
                              GError            **error,
                              gint                code,
                              const char         *format,
                              ...) G_GNUC_PRINTF (4, 5);

static gboolean
decoder_fail (TlspyoFrameDecoder  *dec,
              GError             **error,
              gint                 code,
              const char          *format,
              ...)
{
  va_list args;

  va_start (args, format);
  dec->failure = g_error_new_valist (TLSPYO_ERROR, code, format, args);
  va_end (args);

  /* Release a possibly large body buffer now, not when the connection
   * object eventually goes away. */
  decoder_clear_frame (dec);
  dec->state = DECODER_FAILED;

  if (error != NULL)
    *error = g_error_copy (dec->failure);

  return FALSE;
}

static gboolean
decoder_refuse (TlspyoFrameDecoder  *dec,
                GError             **error)
{
  if (error != NULL)
    *error = g_error_copy (dec->failure);
  return FALSE;
}

/* Checks whatever part of the header has arrived, so that a peer speaking
 * something else (a TLS alert is only 7 bytes) is reported as such instead of
 * leaving us waiting for a full header. Repeating a passed check is cheap. */
static gboolean
decoder_check_header (TlspyoFrameDecoder  *dec,
                      GError             **error)
{
  const guint8 *h = dec->header;
  gsize n = dec->header_fill;
  TlspyoFrameType type;
  guint32 meta_len = 0;
  guint64 body_len = 0;
  guint i;

  if (n >= 1 && h[0] != TLSPYO_FRAME_MAGIC)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "not a tlspyo-glib peer (is one side using TLS and the "
                         "other not?): received byte 0x%02x where a frame starts "
                         "with 0x%02x",
                         h[0], TLSPYO_FRAME_MAGIC);

  if (n >= 2 && h[1] != TLSPYO_PROTOCOL_VERSION)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "the peer speaks tlspyo-glib protocol version %u, but "
                         "only version %u is supported: use compatible releases "
                         "of tlspyo-glib on both sides",
                         h[1], TLSPYO_PROTOCOL_VERSION);

  if (n < 3)
    return TRUE;

  if (!frame_type_is_known (h[2]))
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "unknown frame type %u", h[2]);
  type = h[2];

  if ((dec->allowed_types & TLSPYO_FRAME_BIT (type)) == 0)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "unexpected %s frame: it is not allowed at this point "
                         "of the connection",
                         tlspyo_frame_type_to_string (type));

  if (n >= 4 && h[3] != 0)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "frame flags are 0x%02x, but no flags are defined: "
                         "they must be 0",
                         h[3]);

  if (n < TLSPYO_FRAME_HEADER_SIZE)
    return TRUE;

  for (i = 0; i < 4; i++)
    meta_len |= (guint32) h[4 + i] << (8 * i);
  for (i = 0; i < 8; i++)
    body_len |= (guint64) h[8 + i] << (8 * i);

  /* Every limit is checked before anything is allocated for the frame. */
  if (meta_len == 0)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "%s frame has no metadata",
                         tlspyo_frame_type_to_string (type));

  if (meta_len > dec->max_meta)
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "frame metadata of %" G_GUINT32_FORMAT " bytes exceeds "
                         "the limit of %" G_GSIZE_FORMAT " bytes",
                         meta_len, dec->max_meta);

  if (tlspyo_frame_type_has_body (type))
    {
      if (body_len < 2)
        return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                             "%s frame body of %" G_GUINT64_FORMAT " bytes is "
                             "too short to hold an object",
                             tlspyo_frame_type_to_string (type), body_len);

      if (body_len > dec->max_body)
        return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                             "object of %" G_GUINT64_FORMAT " bytes exceeds the "
                             "limit of %" G_GUINT64_FORMAT " bytes",
                             body_len, dec->max_body);

      /* Only reachable on 32-bit hosts with a limit above 4 GiB. */
      if (body_len > G_MAXSIZE)
        return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                             "object of %" G_GUINT64_FORMAT " bytes does not fit "
                             "in this process's address space",
                             body_len);
    }
  else if (body_len != 0)
    {
      return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                           "%s frame must not have a body, but announces %"
                           G_GUINT64_FORMAT " bytes",
                           tlspyo_frame_type_to_string (type), body_len);
    }

  dec->type = type;
  dec->meta_len = meta_len;
  dec->body_len = (gsize) body_len;
  if (dec->meta_buf_size < meta_len)
    {
      g_free (dec->meta_buf);
      dec->meta_buf = g_malloc (meta_len);
      dec->meta_buf_size = meta_len;
    }
  dec->meta_fill = 0;
  dec->state = DECODER_META;

  return TRUE;
}

/* Takes @meta and @body. The decoder is between frames while @func runs, so
 * that set_limits() applies to the next frame and get_buffered() is 0. */
static void
decoder_dispatch (TlspyoFrameDecoder *dec,
                  GVariant           *meta,
                  GBytes             *body,
                  TlspyoFrameFunc     func,
                  gpointer            user_data)
{
  TlspyoFrame frame = { dec->type, meta, body };
  gboolean keep_going;

  decoder_clear_frame (dec);
  dec->state = DECODER_HEADER;

  dec->dispatching = TRUE;
  keep_going = func (&frame, user_data);
  dec->dispatching = FALSE;

  g_variant_unref (meta);
  g_clear_pointer (&body, g_bytes_unref);

  if (!keep_going)
    dec->state = DECODER_STOPPED;
}

static gboolean
decoder_finish_meta (TlspyoFrameDecoder  *dec,
                     TlspyoFrameFunc      func,
                     gpointer             user_data,
                     GError             **error)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) meta = NULL;
  const GVariantType *meta_type = tlspyo_frame_meta_type (dec->type);
  GVariant *last = dec->last_meta[dec->type];

  /* The cached value holds the peer's bytes as they came (little-endian). */
  if (last != NULL && G_BYTE_ORDER == G_LITTLE_ENDIAN &&
      g_variant_get_size (last) == dec->meta_len &&
      memcmp (g_variant_get_data (last), dec->meta_buf, dec->meta_len) == 0)
    meta = g_variant_ref (last);
  else
    {
      /* g_bytes_new()'s copy is aligned for any GVariant. */
      bytes = g_bytes_new (dec->meta_buf, dec->meta_len);
      meta = g_variant_ref_sink (g_variant_new_from_bytes (meta_type, bytes, FALSE));

      /* Normal form means every later access reads what the peer meant, not
       * default values, so the rest of the library can trust the metadata. */
      if (!g_variant_is_normal_form (meta))
        return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                             "%s frame metadata is not a valid “%s” value",
                             tlspyo_frame_type_to_string (dec->type),
                             frame_types[dec->type].meta_type);

      if (G_BYTE_ORDER == G_BIG_ENDIAN)
        meta = swap_wire_order (meta);
      else
        {
          g_clear_pointer (&dec->last_meta[dec->type], g_variant_unref);
          dec->last_meta[dec->type] = g_variant_ref (meta);
        }
    }

  if (!tlspyo_frame_type_has_body (dec->type))
    {
      decoder_dispatch (dec, g_steal_pointer (&meta), NULL, func, user_data);
      return TRUE;
    }

  /* One allocation for the whole body, so that the caller can read straight
   * into it and the GBytes can take it over without a copy. Allocated only
   * now that the metadata is known good, so a peer needs a valid frame to
   * make us reserve memory. g_try_malloc(): a large object must not abort. */
  dec->body = g_try_malloc (dec->body_len);
  if (dec->body == NULL)
    return decoder_fail (dec, error, TLSPYO_ERROR_FAILED,
                         "not enough memory to receive an object of %"
                         G_GSIZE_FORMAT " bytes",
                         dec->body_len);

  dec->meta = g_steal_pointer (&meta);
  dec->body_fill = 0;
  dec->state = DECODER_BODY;

  return TRUE;
}

static gboolean
decoder_finish_body (TlspyoFrameDecoder  *dec,
                     TlspyoFrameFunc      func,
                     gpointer             user_data,
                     GError             **error)
{
  g_autoptr(GError) local_error = NULL;
  GBytes *body;

  /* Not only the trailer: the relay forwards objects without deserializing
   * them, but one its receivers would reject must not get through. Each of
   * them would drop its connection, and, kept as a group's latest
   * broadcast, the object would drop every member that joins later too. */
  if (!body_check_fits (dec->body, dec->body_len, &local_error))
    return decoder_fail (dec, error, TLSPYO_ERROR_PROTOCOL,
                         "%s frame carries an invalid object: %s",
                         tlspyo_frame_type_to_string (dec->type),
                         local_error->message);

  body = g_bytes_new_take (g_steal_pointer (&dec->body), dec->body_len);
  decoder_dispatch (dec, g_steal_pointer (&dec->meta), body, func, user_data);

  return TRUE;
}

gboolean
tlspyo_frame_decoder_feed (TlspyoFrameDecoder  *dec,
                           const guint8        *data,
                           gsize                len,
                           TlspyoFrameFunc      func,
                           gpointer             user_data,
                           GError             **error)
{
  g_return_val_if_fail (dec != NULL, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (func != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (!dec->dispatching, FALSE);

  if (dec->state == DECODER_FAILED)
    return decoder_refuse (dec, error);

  while (len > 0 && dec->state != DECODER_STOPPED)
    {
      gsize n;

      switch (dec->state)
        {
        case DECODER_HEADER:
          n = MIN (len, TLSPYO_FRAME_HEADER_SIZE - dec->header_fill);
          memcpy (dec->header + dec->header_fill, data, n);
          dec->header_fill += n;
          if (!decoder_check_header (dec, error))
            return FALSE;
          break;

        case DECODER_META:
          n = MIN (len, dec->meta_len - dec->meta_fill);
          memcpy (dec->meta_buf + dec->meta_fill, data, n);
          dec->meta_fill += n;
          if (dec->meta_fill == dec->meta_len &&
              !decoder_finish_meta (dec, func, user_data, error))
            return FALSE;
          break;

        case DECODER_BODY:
          n = MIN (len, dec->body_len - dec->body_fill);
          memcpy (dec->body + dec->body_fill, data, n);
          dec->body_fill += n;
          if (dec->body_fill == dec->body_len &&
              !decoder_finish_body (dec, func, user_data, error))
            return FALSE;
          break;

        case DECODER_STOPPED:
        case DECODER_FAILED:
        default:
          g_assert_not_reached ();
        }

      data += n;
      len -= n;
    }

  return TRUE;
}

guint8 *
tlspyo_frame_decoder_body_space (TlspyoFrameDecoder *dec,
                                 gsize              *n_missing)
{
  g_return_val_if_fail (dec != NULL, NULL);
  g_return_val_if_fail (n_missing != NULL, NULL);

  if (dec->state != DECODER_BODY)
    {
      *n_missing = 0;
      return NULL;
    }

  *n_missing = dec->body_len - dec->body_fill;
  return dec->body + dec->body_fill;
}

gboolean
tlspyo_frame_decoder_commit_body (TlspyoFrameDecoder  *dec,
                                  gsize                n,
                                  TlspyoFrameFunc      func,
                                  gpointer             user_data,
                                  GError             **error)
{
  g_return_val_if_fail (dec != NULL, FALSE);
  g_return_val_if_fail (func != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (!dec->dispatching, FALSE);

  if (dec->state == DECODER_FAILED)
    return decoder_refuse (dec, error);
  if (dec->state == DECODER_STOPPED)
    return TRUE;

  g_return_val_if_fail (dec->state == DECODER_BODY, FALSE);
  g_return_val_if_fail (n <= dec->body_len - dec->body_fill, FALSE);

  dec->body_fill += n;
  if (dec->body_fill == dec->body_len)
    return decoder_finish_body (dec, func, user_data, error);

  return TRUE;
}

gsize
tlspyo_frame_decoder_get_buffered (TlspyoFrameDecoder *dec)
{
  g_return_val_if_fail (dec != NULL, 0);

  switch (dec->state)
    {
    case DECODER_HEADER:
      return dec->header_fill;
    case DECODER_META:
      return TLSPYO_FRAME_HEADER_SIZE + dec->meta_fill;
    case DECODER_BODY:
      return TLSPYO_FRAME_HEADER_SIZE + dec->meta_len + dec->body_fill;
    case DECODER_STOPPED:
    case DECODER_FAILED:
    default:
      return 0;
    }
}

/* Group names */

gboolean
tlspyo_group_name_check (const char  *group,
                         GError     **error)
{
  const char *bad;
  const char *p;
  gsize len;

  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* Not a g_return_val_if_fail(): group names come from users and
   * configuration files, where a missing one is an error to report. */
  if (group == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "no group name given: give each group a name of 1 to %d bytes",
                   GROUP_NAME_MAX_BYTES);
      return FALSE;
    }

  len = strlen (group);
  if (len == 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "group name is empty: give each group a name of 1 to %d bytes",
                   GROUP_NAME_MAX_BYTES);
      return FALSE;
    }

  if (len > GROUP_NAME_MAX_BYTES)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "group name of %" G_GSIZE_FORMAT " bytes is too long: give "
                   "each group a name of 1 to %d bytes (in UTF-8)",
                   len, GROUP_NAME_MAX_BYTES);
      return FALSE;
    }

  if (!g_utf8_validate (group, len, &bad))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "group name is not valid UTF-8 (bad byte 0x%02x at offset %"
                   G_GSIZE_FORMAT "): group names must be UTF-8 text",
                   (guint8) *bad, (gsize) (bad - group));
      return FALSE;
    }

  for (p = group; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (g_unichar_iscntrl (c))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "group name contains control character U+%04X at offset %"
                       G_GSIZE_FORMAT ": remove it, group names must be "
                       "printable",
                       c, (gsize) (p - group));
          return FALSE;
        }
    }

  return TRUE;
}
