/* SPDX-License-Identifier: MIT */
#pragma once

/* JSON <-> GVariant for `tlspyo send` and `tlspyo receive`.
 *
 * json_gvariant_deserialize() of json-glib 1.6 is not used: with a
 * signature it aborts on an invalid object path, wraps out-of-range
 * integers silently (300 as "y" becomes 44) and names no position. This
 * conversion checks every value against the type and says where it does
 * not fit. Without a type it follows json-glib's natural mapping: integers
 * to "x", other numbers to "d", strings to "s", true/false to "b", null to
 * "mv", arrays to "av" and objects to "a{sv}". No I/O, no global state. */

#include "tlspyo-json-doc.h"

G_BEGIN_DECLS

GVariant *tlspyo_json_variant_from_doc (TlspyoJsonDoc       *doc,
                                        const GVariantType  *type,
                                        GError             **error);
GVariant *tlspyo_json_variant_parse    (const char          *data,
                                        gsize                length,
                                        guint                first_line,
                                        const GVariantType  *type,
                                        GError             **error);
char     *tlspyo_json_variant_to_json  (GVariant            *value);

G_END_DECLS
