/* SPDX-License-Identifier: MIT */
#pragma once

/* A JSON text parsed by json-glib after a strict RFC 8259 check, with the
 * line and column of every value kept for error messages.
 *
 * json-glib 1.6 alone is lenient where the tool must not be: it wraps
 * integers beyond 64 bits silently, turns 1e400 into infinity, cuts strings
 * at "\u0000", takes the first of several top-level values, keeps the last
 * of duplicate keys, allows comments, and forgets where each node came from.
 * The check here refuses all of that with a position, then json-glib builds
 * the tree. No I/O and no global state: the config reader and the JSON
 * conversion built on it are fuzzing targets. */

#include <json-glib/json-glib.h>
#include <tlspyo-glib/tlspyo-glib.h>

G_BEGIN_DECLS

/* Deeper nesting is refused: it keeps recursion bounded here and in every
 * consumer, and stays well within GVariant's own nesting limit. */
#define TLSPYO_JSON_MAX_DEPTH 64

typedef struct {
  guint line;    /* from 1 */
  guint column;  /* from 1, in characters */
} TlspyoJsonPosition;

typedef struct _TlspyoJsonDoc TlspyoJsonDoc;

TlspyoJsonDoc *tlspyo_json_doc_parse            (const char          *data,
                                                 gsize                length,
                                                 guint                first_line,
                                                 GError             **error);
JsonNode      *tlspyo_json_doc_get_root         (TlspyoJsonDoc       *doc);
gboolean       tlspyo_json_doc_get_position     (TlspyoJsonDoc       *doc,
                                                 JsonNode            *node,
                                                 TlspyoJsonPosition  *position);
gboolean       tlspyo_json_doc_get_key_position (TlspyoJsonDoc       *doc,
                                                 JsonNode            *node,
                                                 TlspyoJsonPosition  *position);
char          *tlspyo_json_doc_describe_node    (JsonNode            *node);
void           tlspyo_json_doc_free             (TlspyoJsonDoc       *doc);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoJsonDoc, tlspyo_json_doc_free)

G_END_DECLS
