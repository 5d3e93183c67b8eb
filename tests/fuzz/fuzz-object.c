/* SPDX-License-Identifier: MIT */
/* Object bodies (serialized data, a NUL, a type string) as an endpoint
 * receives them. Whatever tlspyo_object_from_body() accepts must be safe
 * to walk, and must go out again: re-encoded it is accepted by the
 * sender's check, decodes to an equal value, and its type is the type the
 * body announced. Input: the body. */
#include <string.h>

#include "fuzz-common.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"

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
  g_autoptr(GBytes) body = g_bytes_new (data, size);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) object = NULL;
  gboolean checked;

  checked = tlspyo_object_body_check (data, size, NULL);
  object = tlspyo_object_from_body (body, &error);
  if (object == NULL)
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == TLSPYO_ERROR);
      return 0;
    }
  g_assert_true (checked);
  g_assert_no_error (error);

  /* The type travelled with the data. */
  {
    const char *type = g_variant_get_type_string (object);
    gsize type_len = strlen (type);

    g_assert_cmpuint (size, >, type_len);
    g_assert_cmpmem (data + size - type_len, type_len, type, type_len);
    g_assert_cmpint (data[size - type_len - 1], ==, 0);
  }

  /* Walk it: what an application does with what it receives. */
  {
    g_autoptr(GVariant) normal = g_variant_get_normal_form (object);

    g_assert_true (g_variant_is_normal_form (normal));
    if (size <= 16 * 1024)
      {
        g_autofree char *text = g_variant_print (object, TRUE);
        g_autofree char *normal_text = g_variant_print (normal, TRUE);

        g_assert_cmpstr (text, ==, normal_text);
      }
  }

  /* Send it on: the sender's checks accept it, and it comes back equal. */
  {
    g_autoptr(GBytes) piece = NULL;
    g_autoptr(GBytes) trailer = NULL;
    g_autoptr(GBytes) again = NULL;
    g_autoptr(GVariant) back = NULL;
    const guint8 *again_data;
    gsize again_len;

    tlspyo_object_to_body (object, &piece, &trailer);
    if (!tlspyo_object_body_pieces_check (piece, trailer, &error))
      g_error ("a received object cannot be sent on: %s", error->message);
    again = tlspyo_object_to_bytes (object);
    again_data = g_bytes_get_data (again, &again_len);
    g_assert_true (tlspyo_object_body_check (again_data, again_len, NULL));
    back = tlspyo_object_from_body (again, &error);
    g_assert_no_error (error);
    g_assert_nonnull (back);
    if (size <= 16 * 1024)
      g_assert_true (g_variant_equal (object, back));
  }
  return 0;
}
