/* SPDX-License-Identifier: MIT */
#pragma once

/* Wire framing: how bytes on a connection become frames and back. No sockets
 * here, so every rule can be tested by feeding bytes. The layout is documented
 * in docs/protocol.md; keep the two in step. */

#include <glib.h>

G_BEGIN_DECLS

#define TLSPYO_FRAME_MAGIC        0x54  /* 'T' */
#define TLSPYO_PROTOCOL_VERSION   2
#define TLSPYO_FRAME_HEADER_SIZE  16

/* Before authentication only handshake frames are read, and their metadata
 * must stay this small. */
#define TLSPYO_FRAME_MAX_META_HANDSHAKE  4096
/* After authentication: metadata only holds group names and counts. */
#define TLSPYO_FRAME_MAX_META            (1024 * 1024)

#define TLSPYO_DEFAULT_MAX_OBJECT_SIZE   ((guint64) 256 * 1024 * 1024)

/* An endpoint's session id (SESSION frame): random, for its lifetime. */
#define TLSPYO_SESSION_ID_SIZE           16

typedef enum {
  TLSPYO_FRAME_HELLO     = 1,  /* endpoint -> relay  (uay)   version, endpoint nonce */
  TLSPYO_FRAME_CHALLENGE = 2,  /* relay -> endpoint  (ayayu) relay nonce, salt, iterations */
  TLSPYO_FRAME_AUTH      = 3,  /* endpoint -> relay  (ayas)  endpoint proof, groups */
  TLSPYO_FRAME_WELCOME   = 4,  /* relay -> endpoint  (ay)    relay proof */
  TLSPYO_FRAME_REFUSED   = 5,  /* relay -> endpoint  (us)    TlspyoError code, reason */
  TLSPYO_FRAME_OBJECT    = 6,  /* endpoint -> relay  (a{si}) destinations; body: object */
  TLSPYO_FRAME_NOTIFY    = 7,  /* endpoint -> relay  (si)    group, count */
  TLSPYO_FRAME_ACK       = 8,  /* relay -> endpoint  (t)     frames handled since WELCOME */
  TLSPYO_FRAME_DELIVER   = 9,  /* relay -> endpoint  (stt)   group, relay instance, broadcast sequence; body: object */
  TLSPYO_FRAME_BYE       = 10, /* either way         (s)     reason; then the sender closes */
  TLSPYO_FRAME_PING      = 11, /* either way         (t)     token; answered by PONG */
  TLSPYO_FRAME_PONG      = 12, /* either way         (t)     the PING's token */
  TLSPYO_FRAME_PRODUCED  = 13, /* relay -> endpoint  (sb)    group, used credit; body: object */
  TLSPYO_FRAME_DENIED    = 14, /* relay -> endpoint  (uss)   TlspyoError code, group, reason */
  TLSPYO_FRAME_HELLO_USER = 15, /* endpoint -> relay (uays)  HELLO with a user name */
  TLSPYO_FRAME_SESSION   = 16, /* endpoint -> relay  (ayta{st}a{s(tt)}) session id, first sequence number
                                * it may send, group -> produced objects received, group -> (instance,
                                * sequence) of the last broadcast seen */
  TLSPYO_FRAME_RESUMED   = 17, /* relay -> endpoint  (ttb)   next sequence number expected, max-object-size,
                                * whether the objects in flight to the session were kept */
  TLSPYO_FRAME_TAKEN     = 18, /* endpoint -> relay  (a{su}) group -> produced objects the application took;
                                * sequenced */
} TlspyoFrameType;

#define TLSPYO_FRAME_TYPE_LAST TLSPYO_FRAME_TAKEN
#define TLSPYO_FRAME_BIT(t) (1u << (t))
#define TLSPYO_FRAME_MASK_ALL (((1u << (TLSPYO_FRAME_TYPE_LAST + 1)) - 1) & ~1u)

typedef struct {
  TlspyoFrameType  type;
  GVariant        *meta;  /* of tlspyo_frame_meta_type (type), normal form, never floating */
  GBytes          *body;  /* NULL unless the type carries an object */
} TlspyoFrame;

const GVariantType *tlspyo_frame_meta_type   (TlspyoFrameType type);
gboolean            tlspyo_frame_type_has_body (TlspyoFrameType type);
const char         *tlspyo_frame_type_to_string (TlspyoFrameType type);

/* Encoding. The header and serialized metadata go into one buffer; the body
 * (an object's bytes) is sent after it as a separate piece, never copied. */
void     tlspyo_frame_write_header (guint8           header[TLSPYO_FRAME_HEADER_SIZE],
                                    TlspyoFrameType  type,
                                    guint32          meta_len,
                                    guint64          body_len);
void     tlspyo_frame_append       (GByteArray      *out,
                                    TlspyoFrameType  type,
                                    GVariant        *meta,
                                    guint64          body_len);
GBytes  *tlspyo_frame_encode       (TlspyoFrameType  type,
                                    GVariant        *meta,
                                    guint64          body_len);
/* Metadata serialized once, for frames that repeat it (the same group, the
 * same destination): appending it is then a copy, not a serialization. */
GBytes  *tlspyo_frame_serialize_meta    (TlspyoFrameType  type,
                                         GVariant        *meta);
void     tlspyo_frame_append_serialized (GByteArray      *out,
                                         TlspyoFrameType  type,
                                         GBytes          *meta,
                                         guint64          body_len);

/* Objects travel as a GVariant of type "v" serialized little-endian: the
 * object's own serialized data, a NUL byte, then its type string. Splitting
 * it in two pieces lets the sender hand out the object's buffer as-is. */
void      tlspyo_object_to_body    (GVariant   *object,
                                    GBytes    **data,
                                    GBytes    **trailer);
GBytes   *tlspyo_object_to_bytes   (GVariant   *object);
gboolean  tlspyo_object_body_check (const guint8 *body,
                                    gsize         len,
                                    GError      **error);
/* What a receiver will accept, checked before sending: an object nested
 * deeper than GVariant reads from untrusted data would be refused. */
gboolean  tlspyo_object_check_depth (GVariant  *object,
                                     GError   **error);
gboolean  tlspyo_object_body_pieces_check (GBytes  *data,
                                           GBytes  *trailer,
                                           GError **error);
GVariant *tlspyo_object_from_body  (GBytes     *body,
                                    GError    **error);

/* Decoding. */
typedef struct _TlspyoFrameDecoder TlspyoFrameDecoder;

/* Called for each complete frame, in order. The frame is borrowed: ref what
 * you keep. Return FALSE to stop decoding (the connection is going away). */
typedef gboolean (*TlspyoFrameFunc) (const TlspyoFrame *frame,
                                     gpointer           user_data);

TlspyoFrameDecoder *tlspyo_frame_decoder_new         (gsize               max_meta,
                                                      guint64             max_body,
                                                      guint32             allowed_types);
void                tlspyo_frame_decoder_free        (TlspyoFrameDecoder *dec);
void                tlspyo_frame_decoder_set_limits  (TlspyoFrameDecoder *dec,
                                                      gsize               max_meta,
                                                      guint64             max_body,
                                                      guint32             allowed_types);
gboolean            tlspyo_frame_decoder_feed        (TlspyoFrameDecoder *dec,
                                                      const guint8       *data,
                                                      gsize               len,
                                                      TlspyoFrameFunc     func,
                                                      gpointer            user_data,
                                                      GError            **error);
guint8             *tlspyo_frame_decoder_body_space  (TlspyoFrameDecoder *dec,
                                                      gsize              *n_missing);
gboolean            tlspyo_frame_decoder_commit_body (TlspyoFrameDecoder *dec,
                                                      gsize               n,
                                                      TlspyoFrameFunc     func,
                                                      gpointer            user_data,
                                                      GError            **error);
gsize               tlspyo_frame_decoder_get_buffered (TlspyoFrameDecoder *dec);

/* Group names: valid UTF-8, 1 to 255 bytes, no control characters. */
gboolean tlspyo_group_name_check (const char  *group,
                                  GError     **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoFrameDecoder, tlspyo_frame_decoder_free)

G_END_DECLS
