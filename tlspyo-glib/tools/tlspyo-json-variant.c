/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <math.h>
#include <string.h>

#include <tlspyo-glib/tlspyo-glib.h>

#include "tlspyo-json-variant.h"

typedef struct {
  TlspyoJsonDoc *doc;
  GString       *path;  /* "$", "$.key", "$[3]", ... of the node being converted */
  GError       **error;
} Converter;

static void
path_push_index (Converter *c,
                 guint      index)
{
  g_string_append_printf (c->path, "[%u]", index);
}

static void
path_push_key (Converter  *c,
               const char *key)
{
  gboolean plain = *key != '\0' && !g_ascii_isdigit (*key);

  for (const char *p = key; *p != '\0' && plain; p++)
    plain = g_ascii_isalnum (*p) || *p == '_';
  if (plain)
    {
      g_string_append_printf (c->path, ".%s", key);
    }
  else
    {
      g_autofree char *quoted = g_strescape (key, NULL);
      g_string_append_printf (c->path, "[\"%s\"]", quoted);
    }
}

static char *
describe_where (Converter *c,
                JsonNode  *node,
                gboolean   key)
{
  TlspyoJsonPosition position;
  gboolean found;

  if (c->doc == NULL)
    return g_strdup ("");
  if (key)
    found = tlspyo_json_doc_get_key_position (c->doc, node, &position);
  else
    found = tlspyo_json_doc_get_position (c->doc, node, &position);
  if (!found)
    return g_strdup ("");
  return g_strdup_printf ("line %u, column %u: ", position.line, position.column);
}

/* @found may be NULL: then it describes @node. */
static gboolean
convert_fail (Converter          *c,
              JsonNode           *node,
              const GVariantType *type,
              const char         *expected,
              const char         *found)
{
  g_autofree char *described = found ? NULL : tlspyo_json_doc_describe_node (node);
  g_autofree char *where = describe_where (c, node, FALSE);

  g_set_error (c->error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
               "%sthe value at %s does not fit the type “%.*s”: expected %s, found %s",
               where, c->path->str,
               (int) g_variant_type_get_string_length (type), g_variant_type_peek_string (type),
               expected, found ? found : described);
  return FALSE;
}

static gboolean
node_is_value (JsonNode *node,
               GType     value_type)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == value_type;
}

typedef struct {
  char   type;
  gint64 min;
  gint64 max;
} IntegerRange;

/* "t" stops at G_MAXINT64: JSON integers are read as 64-bit signed. */
static const IntegerRange integer_ranges[] = {
  { 'y', 0, G_MAXUINT8 },
  { 'n', G_MININT16, G_MAXINT16 },
  { 'q', 0, G_MAXUINT16 },
  { 'i', G_MININT32, G_MAXINT32 },
  { 'u', 0, G_MAXUINT32 },
  { 'x', G_MININT64, G_MAXINT64 },
  { 't', 0, G_MAXINT64 },
  { 'h', G_MININT32, G_MAXINT32 },
};

static const IntegerRange *
integer_range (char type)
{
  for (gsize i = 0; i < G_N_ELEMENTS (integer_ranges); i++)
    if (integer_ranges[i].type == type)
      return &integer_ranges[i];
  return NULL;
}

static GVariant *
integer_variant (char   type,
                 gint64 value)
{
  switch (type)
    {
    case 'y': return g_variant_new_byte ((guchar) value);
    case 'n': return g_variant_new_int16 ((gint16) value);
    case 'q': return g_variant_new_uint16 ((guint16) value);
    case 'i': return g_variant_new_int32 ((gint32) value);
    case 'u': return g_variant_new_uint32 ((guint32) value);
    case 'x': return g_variant_new_int64 (value);
    case 't': return g_variant_new_uint64 ((guint64) value);
    case 'h': return g_variant_new_handle ((gint32) value);
    default: g_assert_not_reached ();
    }
}

static char *
describe_range (const IntegerRange *range)
{
  return g_strdup_printf ("an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                          range->min, range->max);
}

static GVariant *convert (Converter          *c,
                          JsonNode           *node,
                          const GVariantType *type);

static GVariant *
convert_natural (Converter *c,
                 JsonNode  *node)
{
  switch (json_node_get_node_type (node))
    {
    case JSON_NODE_NULL:
      return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);

    case JSON_NODE_OBJECT:
      return convert (c, node, G_VARIANT_TYPE_VARDICT);

    case JSON_NODE_ARRAY:
      return convert (c, node, G_VARIANT_TYPE ("av"));

    case JSON_NODE_VALUE:
    default:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_BOOLEAN:
          return g_variant_new_boolean (json_node_get_boolean (node));
        case G_TYPE_INT64:
          return g_variant_new_int64 (json_node_get_int (node));
        case G_TYPE_DOUBLE:
          return g_variant_new_double (json_node_get_double (node));
        case G_TYPE_STRING:
          return g_variant_new_string (json_node_get_string (node));
        default:
          g_set_error (c->error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "the value at %s has a type JSON does not have", c->path->str);
          return NULL;
        }
    }
}

/* Dictionary keys are JSON strings; a{is} and friends read them as numbers. */
static GVariant *
convert_key (Converter          *c,
             JsonNode           *value_node,
             const char         *key,
             const GVariantType *type)
{
  char t = *g_variant_type_peek_string (type);
  const IntegerRange *range = integer_range (t);
  g_autofree char *where = NULL;
  g_autofree char *expected = NULL;

  if (t == 's')
    return g_variant_new_string (key);
  if (t == 'o' && g_variant_is_object_path (key))
    return g_variant_new_object_path (key);
  if (t == 'g' && g_variant_is_signature (key))
    return g_variant_new_signature (key);
  if (t == 'b' && (strcmp (key, "true") == 0 || strcmp (key, "false") == 0))
    return g_variant_new_boolean (strcmp (key, "true") == 0);
  if (range != NULL)
    {
      gint64 value;

      if (g_ascii_string_to_signed (key, 10, range->min, range->max, &value, NULL))
        return integer_variant (t, value);
      expected = describe_range (range);
    }
  if (t == 'd')
    {
      char *end = NULL;
      double value = g_ascii_strtod (key, &end);

      if (*key != '\0' && *end == '\0' && isfinite (value))
        return g_variant_new_double (value);
      expected = g_strdup ("a number");
    }

  if (expected == NULL)
    {
      switch (t)
        {
        case 'o': expected = g_strdup ("an object path such as “/org/example/Thing”"); break;
        case 'g': expected = g_strdup ("a type signature such as “a{sv}”"); break;
        case 'b': expected = g_strdup ("“true” or “false”"); break;
        default: expected = g_strdup ("a basic value"); break;
        }
    }
  where = describe_where (c, value_node, TRUE);
  g_set_error (c->error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
               "%sthe key “%s” at %s does not fit the key type “%c”: expected %s",
               where, key, c->path->str, t, expected);
  return NULL;
}

static GVariant *
convert_dict (Converter          *c,
              JsonNode           *node,
              const GVariantType *type)
{
  const GVariantType *entry_type = g_variant_type_element (type);
  const GVariantType *key_type = g_variant_type_key (entry_type);
  const GVariantType *value_type = g_variant_type_value (entry_type);
  g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  JsonObjectIter iter;
  const char *name;
  JsonNode *member;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      convert_fail (c, node, type, "an object", NULL);
      return NULL;
    }

  json_object_iter_init_ordered (&iter, json_node_get_object (node));
  while (json_object_iter_next_ordered (&iter, &name, &member))
    {
      gsize len = c->path->len;
      GVariant *key, *value;

      path_push_key (c, name);
      key = convert_key (c, member, name, key_type);
      if (key == NULL)
        return NULL;
      g_variant_ref_sink (key);
      value = convert (c, member, value_type);
      if (value == NULL)
        {
          g_variant_unref (key);
          return NULL;
        }
      g_ptr_array_add (entries, g_variant_ref_sink (g_variant_new_dict_entry (key, value)));
      g_variant_unref (key);
      g_string_truncate (c->path, len);
    }
  return g_variant_new_array (entry_type, (GVariant **) entries->pdata, entries->len);
}

static GVariant *
convert_array (Converter          *c,
               JsonNode           *node,
               const GVariantType *type)
{
  const GVariantType *element_type = g_variant_type_element (type);
  g_autoptr(GPtrArray) elements = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  JsonArray *array;
  guint n;

  if (g_variant_type_is_dict_entry (element_type))
    return convert_dict (c, node, type);
  if (!JSON_NODE_HOLDS_ARRAY (node))
    {
      convert_fail (c, node, type, "an array", NULL);
      return NULL;
    }

  array = json_node_get_array (node);
  n = json_array_get_length (array);
  for (guint i = 0; i < n; i++)
    {
      gsize len = c->path->len;
      GVariant *element;

      path_push_index (c, i);
      element = convert (c, json_array_get_element (array, i), element_type);
      if (element == NULL)
        return NULL;
      g_ptr_array_add (elements, g_variant_ref_sink (element));
      g_string_truncate (c->path, len);
    }
  return g_variant_new_array (element_type, (GVariant **) elements->pdata, elements->len);
}

/* Tuples and lone dictionary entries are JSON arrays of their items. */
static GVariant *
convert_items (Converter          *c,
               JsonNode           *node,
               const GVariantType *type)
{
  g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  gsize n_items = g_variant_type_n_items (type);
  const GVariantType *item_type;
  JsonArray *array;
  guint i = 0;

  if (!JSON_NODE_HOLDS_ARRAY (node) ||
      json_array_get_length (json_node_get_array (node)) != n_items)
    {
      g_autofree char *expected = g_strdup_printf ("an array of %" G_GSIZE_FORMAT " element%s",
                                                   n_items, n_items == 1 ? "" : "s");
      g_autofree char *found = NULL;

      if (JSON_NODE_HOLDS_ARRAY (node))
        found = g_strdup_printf ("an array of %u", json_array_get_length (json_node_get_array (node)));
      convert_fail (c, node, type, expected, found);
      return NULL;
    }

  array = json_node_get_array (node);
  for (item_type = g_variant_type_first (type); item_type != NULL;
       item_type = g_variant_type_next (item_type), i++)
    {
      gsize len = c->path->len;
      GVariant *item;

      path_push_index (c, i);
      item = convert (c, json_array_get_element (array, i), item_type);
      if (item == NULL)
        return NULL;
      g_ptr_array_add (items, g_variant_ref_sink (item));
      g_string_truncate (c->path, len);
    }

  if (g_variant_type_is_dict_entry (type))
    return g_variant_new_dict_entry (items->pdata[0], items->pdata[1]);
  return g_variant_new_tuple ((GVariant **) items->pdata, items->len);
}

/* Returns a floating reference, or NULL with c->error set. */
static GVariant *
convert (Converter          *c,
         JsonNode           *node,
         const GVariantType *type)
{
  char t;
  const IntegerRange *range;

  if (type == NULL)
    return convert_natural (c, node);

  t = *g_variant_type_peek_string (type);
  range = integer_range (t);
  if (range != NULL)
    {
      gint64 value;

      if (!node_is_value (node, G_TYPE_INT64) ||
          (value = json_node_get_int (node)) < range->min || value > range->max)
        {
          g_autofree char *expected = describe_range (range);
          convert_fail (c, node, type, expected, NULL);
          return NULL;
        }
      return integer_variant (t, value);
    }

  switch (t)
    {
    case 'b':
      if (!node_is_value (node, G_TYPE_BOOLEAN))
        break;
      return g_variant_new_boolean (json_node_get_boolean (node));

    case 'd':
      if (!node_is_value (node, G_TYPE_DOUBLE) && !node_is_value (node, G_TYPE_INT64))
        break;
      return g_variant_new_double (json_node_get_double (node));

    case 's':
      if (!node_is_value (node, G_TYPE_STRING))
        break;
      return g_variant_new_string (json_node_get_string (node));

    case 'o':
      if (!node_is_value (node, G_TYPE_STRING) ||
          !g_variant_is_object_path (json_node_get_string (node)))
        {
          convert_fail (c, node, type, "a string holding an object path such as “/org/example/Thing”", NULL);
          return NULL;
        }
      return g_variant_new_object_path (json_node_get_string (node));

    case 'g':
      if (!node_is_value (node, G_TYPE_STRING) ||
          !g_variant_is_signature (json_node_get_string (node)))
        {
          convert_fail (c, node, type, "a string holding a type signature such as “a{sv}”", NULL);
          return NULL;
        }
      return g_variant_new_signature (json_node_get_string (node));

    case 'v':
      {
        GVariant *inner = convert_natural (c, node);
        return inner ? g_variant_new_variant (inner) : NULL;
      }

    case 'm':
      {
        GVariant *inner;

        if (JSON_NODE_HOLDS_NULL (node))
          return g_variant_new_maybe (g_variant_type_element (type), NULL);
        inner = convert (c, node, g_variant_type_element (type));
        return inner ? g_variant_new_maybe (NULL, inner) : NULL;
      }

    case 'a':
      return convert_array (c, node, type);

    case '(':
    case '{':
      return convert_items (c, node, type);

    default:
      g_set_error (c->error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "the type “%.*s” is not a definite type: give one such as “a{sv}”",
                   (int) g_variant_type_get_string_length (type), g_variant_type_peek_string (type));
      return NULL;
    }

  {
    const char *expected;

    switch (t)
      {
      case 'b': expected = "true or false"; break;
      case 'd': expected = "a number"; break;
      default: expected = "a string"; break;
      }
    convert_fail (c, node, type, expected, NULL);
  }
  return NULL;
}

/**
 * tlspyo_json_variant_from_doc:
 * @doc: a parsed document
 * @type: (nullable): the definite type to convert to, or %NULL for the
 *   natural mapping
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the value (not floating), or %NULL with @error
 *   set; the message gives the line, column and path of the value that
 *   does not fit
 */
GVariant *
tlspyo_json_variant_from_doc (TlspyoJsonDoc       *doc,
                              const GVariantType  *type,
                              GError             **error)
{
  g_autoptr(GString) path = g_string_new ("$");
  Converter c = { doc, path, error };
  GVariant *value;

  g_return_val_if_fail (doc != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (type != NULL && !g_variant_type_is_definite (type))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "the type “%.*s” is not a definite type: give one such as “a{sv}”",
                   (int) g_variant_type_get_string_length (type), g_variant_type_peek_string (type));
      return NULL;
    }

  value = convert (&c, tlspyo_json_doc_get_root (doc), type);
  return value ? g_variant_ref_sink (value) : NULL;
}

/**
 * tlspyo_json_variant_parse:
 * @data: JSON text
 * @length: its length in bytes
 * @first_line: the line number of its first line, for messages
 * @type: (nullable): the definite type to convert to, or %NULL
 * @error: return location for a #GError
 *
 * Parses one JSON value and converts it to a #GVariant.
 *
 * Returns: (transfer full): the value (not floating), or %NULL with @error set
 */
GVariant *
tlspyo_json_variant_parse (const char          *data,
                           gsize                length,
                           guint                first_line,
                           const GVariantType  *type,
                           GError             **error)
{
  g_autoptr(TlspyoJsonDoc) doc = NULL;

  doc = tlspyo_json_doc_parse (data, length, first_line, error);
  if (doc == NULL)
    return NULL;
  return tlspyo_json_variant_from_doc (doc, type, error);
}

/* GVariant -> JSON */

static void
write_string (GString    *out,
              const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      switch (c)
        {
        case '"':  g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\b': g_string_append (out, "\\b"); break;
        case '\f': g_string_append (out, "\\f"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        default:
          /* Control characters (C0, DEL and C1) are escaped so that an
           * object printed on a terminal cannot send it escape sequences;
           * the line separators so that the output is also valid JavaScript. */
          if (g_unichar_iscntrl (c) || c == 0x2028 || c == 0x2029)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_len (out, p, g_utf8_next_char (p) - p);
        }
    }
  g_string_append_c (out, '"');
}

/* The shortest text that reads back as the same double, always with a
 * '.' or an exponent so that it reads back as a double and not an
 * integer. JSON has no NaN or infinity: they become null, as in
 * JavaScript's JSON.stringify(). */
static void
write_double (GString *out,
              double   value)
{
  char buffer[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (value))
    {
      g_string_append (out, "null");
      return;
    }
  for (int precision = 15; precision <= 17; precision++)
    {
      char format[8];

      g_snprintf (format, sizeof format, "%%.%dg", precision);
      g_ascii_formatd (buffer, sizeof buffer, format, value);
      if (g_ascii_strtod (buffer, NULL) == value)
        break;
    }
  g_string_append (out, buffer);
  if (strpbrk (buffer, ".eE") == NULL)
    g_string_append (out, ".0");
}

static void write_value (GString  *out,
                         GVariant *value);

static void
write_key (GString  *out,
           GVariant *key)
{
  g_autoptr(GString) text = NULL;

  switch (g_variant_classify (key))
    {
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      write_string (out, g_variant_get_string (key, NULL));
      break;
    default:
      text = g_string_new (NULL);
      write_value (text, key);
      write_string (out, text->str);
    }
}

static void
write_value (GString  *out,
             GVariant *value)
{
  GVariantIter iter;
  GVariant *child;
  gboolean first = TRUE;

  switch (g_variant_classify (value))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      g_string_append (out, g_variant_get_boolean (value) ? "true" : "false");
      break;
    case G_VARIANT_CLASS_BYTE:
      g_string_append_printf (out, "%u", g_variant_get_byte (value));
      break;
    case G_VARIANT_CLASS_INT16:
      g_string_append_printf (out, "%d", g_variant_get_int16 (value));
      break;
    case G_VARIANT_CLASS_UINT16:
      g_string_append_printf (out, "%u", g_variant_get_uint16 (value));
      break;
    case G_VARIANT_CLASS_INT32:
      g_string_append_printf (out, "%d", g_variant_get_int32 (value));
      break;
    case G_VARIANT_CLASS_HANDLE:
      g_string_append_printf (out, "%d", g_variant_get_handle (value));
      break;
    case G_VARIANT_CLASS_UINT32:
      g_string_append_printf (out, "%u", g_variant_get_uint32 (value));
      break;
    case G_VARIANT_CLASS_INT64:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (value));
      break;
    case G_VARIANT_CLASS_UINT64:
      g_string_append_printf (out, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
      break;
    case G_VARIANT_CLASS_DOUBLE:
      write_double (out, g_variant_get_double (value));
      break;
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      write_string (out, g_variant_get_string (value, NULL));
      break;
    case G_VARIANT_CLASS_VARIANT:
      child = g_variant_get_variant (value);
      write_value (out, child);
      g_variant_unref (child);
      break;
    case G_VARIANT_CLASS_MAYBE:
      if (g_variant_n_children (value) == 0)
        {
          g_string_append (out, "null");
        }
      else
        {
          child = g_variant_get_child_value (value, 0);
          write_value (out, child);
          g_variant_unref (child);
        }
      break;
    case G_VARIANT_CLASS_ARRAY:
      if (g_variant_type_is_dict_entry (g_variant_type_element (g_variant_get_type (value))))
        {
          g_string_append_c (out, '{');
          g_variant_iter_init (&iter, value);
          while ((child = g_variant_iter_next_value (&iter)) != NULL)
            {
              g_autoptr(GVariant) key = g_variant_get_child_value (child, 0);
              g_autoptr(GVariant) item = g_variant_get_child_value (child, 1);

              if (!first)
                g_string_append_c (out, ',');
              first = FALSE;
              write_key (out, key);
              g_string_append_c (out, ':');
              write_value (out, item);
              g_variant_unref (child);
            }
          g_string_append_c (out, '}');
          break;
        }
      G_GNUC_FALLTHROUGH;
    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
      g_string_append_c (out, '[');
      g_variant_iter_init (&iter, value);
      while ((child = g_variant_iter_next_value (&iter)) != NULL)
        {
          if (!first)
            g_string_append_c (out, ',');
          first = FALSE;
          write_value (out, child);
          g_variant_unref (child);
        }
      g_string_append_c (out, ']');
      break;
    default:
      g_assert_not_reached ();
    }
}

/**
 * tlspyo_json_variant_to_json:
 * @value: any GVariant
 *
 * Writes @value as JSON on one line: numbers as numbers (doubles always
 * with a '.' or an exponent, NaN and infinities as null), strings, object
 * paths and signatures as strings, variants as their content, maybes as
 * null or their content, dictionaries as objects (keys that are not
 * strings written as their JSON text), arrays, tuples and dictionary
 * entries as arrays. Reading the output back with the same type gives
 * @value again, except for non-finite doubles and nested maybes.
 *
 * Returns: (transfer full): the JSON text, without a newline
 */
char *
tlspyo_json_variant_to_json (GVariant *value)
{
  GString *out;

  g_return_val_if_fail (value != NULL, NULL);

  out = g_string_new (NULL);
  write_value (out, value);
  return g_string_free (out, FALSE);
}
