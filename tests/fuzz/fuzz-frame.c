/* SPDX-License-Identifier: MIT */
/* The frame decoder, fed arbitrary bytes in arbitrary chunks under the
 * limits of each state of the relay and of the endpoint. Checks more than
 * "no crash": every frame it lets through has metadata of its type, in
 * normal form, and every object body it lets through is one a receiver
 * accepts (the relay forwards bodies without deserializing them, so a body
 * it passes that endpoints reject would drop every recipient).
 *
 * Input: byte 0 picks the limits and whether they change after the first
 * frame (as they do during the handshake); byte 1 seeds the chunk sizes;
 * the rest is the stream. */
#include <string.h>

#include "fuzz-common.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"

#define MAX_BODY (64 * 1024)

typedef struct {
  gsize   max_meta;
  guint64 max_body;
  guint32 allowed;
} Limits;

static const Limits limits[] = {
  /* relay, before HELLO */
  { TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
    TLSPYO_FRAME_BIT (TLSPYO_FRAME_HELLO) | TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE) },
  /* relay, before AUTH */
  { TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
    TLSPYO_FRAME_BIT (TLSPYO_FRAME_AUTH) | TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE) },
  /* relay, joined */
  { TLSPYO_FRAME_MAX_META, MAX_BODY,
    TLSPYO_FRAME_BIT (TLSPYO_FRAME_OBJECT) | TLSPYO_FRAME_BIT (TLSPYO_FRAME_NOTIFY) |
    TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE) },
  /* endpoint, joined */
  { TLSPYO_FRAME_MAX_META, MAX_BODY, TLSPYO_FRAME_MASK_ALL },
};

typedef struct {
  TlspyoFrameDecoder *dec;
  guint               n_frames;
  guint               stop_after;  /* return FALSE at this frame, 0: never */
  gboolean            switch_limits;
  guint               profile;
} State;

static gboolean
frame_cb (const TlspyoFrame *frame,
          gpointer           user_data)
{
  State *state = user_data;
  const GVariantType *type = tlspyo_frame_meta_type (frame->type);

  g_assert_nonnull (type);
  g_assert_true (g_variant_is_of_type (frame->meta, type));
  g_assert_true (g_variant_is_normal_form (frame->meta));
  g_assert_true ((limits[state->profile].allowed & TLSPYO_FRAME_BIT (frame->type)) != 0 ||
                 (state->switch_limits && state->n_frames > 0));

  /* Walk the metadata, as the state machines read it. */
  {
    g_autofree char *text = g_variant_print (frame->meta, FALSE);
    g_assert_nonnull (text);
  }

  if (tlspyo_frame_type_has_body (frame->type))
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) object = NULL;

      g_assert_nonnull (frame->body);
      object = tlspyo_object_from_body (frame->body, &error);
      if (object == NULL)
        g_error ("the decoder passed a body receivers reject: %s", error->message);
      if (g_bytes_get_size (frame->body) <= 4096)
        {
          g_autofree char *text = g_variant_print (object, TRUE);
          g_assert_nonnull (text);
        }
    }
  else
    g_assert_null (frame->body);

  state->n_frames++;
  /* From inside the callback, as the relay does when a handshake step
   * completes: applies to the next frame. */
  if (state->switch_limits && state->n_frames == 1)
    tlspyo_frame_decoder_set_limits (state->dec, TLSPYO_FRAME_MAX_META, MAX_BODY,
                                     TLSPYO_FRAME_MASK_ALL);
  return state->stop_after == 0 || state->n_frames < state->stop_after;
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  tlspyo_fuzz_init ();
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static const gsize chunk_sizes[] = { 1, 3, 16, 17, 100, 4096, 65536 };
  State state = { 0 };
  guint seed;
  gsize chunk;

  if (size < 2)
    return 0;

  state.profile = data[0] % G_N_ELEMENTS (limits);
  state.switch_limits = (data[0] & 0x10) != 0;
  state.stop_after = (data[0] >> 5) & 0x3;
  seed = data[1];
  data += 2;
  size -= 2;

  state.dec = tlspyo_frame_decoder_new (limits[state.profile].max_meta,
                                        limits[state.profile].max_body,
                                        limits[state.profile].allowed);
  while (size > 0)
    {
      g_autoptr(GError) error = NULL;
      gsize missing = 0;
      guint8 *space;
      gboolean ok;

      chunk = MIN (size, chunk_sizes[seed % G_N_ELEMENTS (chunk_sizes)]);
      seed = seed * 1103515245u + 12345u;

      /* Large bodies are read straight into the decoder's buffer. */
      space = tlspyo_frame_decoder_body_space (state.dec, &missing);
      if (space != NULL && missing > 0 && (seed & 0x100) != 0)
        {
          chunk = MIN (chunk, missing);
          memcpy (space, data, chunk);
          ok = tlspyo_frame_decoder_commit_body (state.dec, chunk, frame_cb, &state, &error);
        }
      else
        ok = tlspyo_frame_decoder_feed (state.dec, data, chunk, frame_cb, &state, &error);

      if (!ok)
        {
          g_assert_nonnull (error);
          g_assert_true (error->domain == TLSPYO_ERROR);
          g_assert_cmpuint (tlspyo_frame_decoder_get_buffered (state.dec), ==, 0);
          break;
        }
      g_assert_null (error);
      data += chunk;
      size -= chunk;
    }
  tlspyo_frame_decoder_free (state.dec);
  return 0;
}
