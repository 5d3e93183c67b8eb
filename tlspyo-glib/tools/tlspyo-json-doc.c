/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <math.h>
#include <string.h>

#include <tlspyo-glib/tlspyo-glib.h>

#include "tlspyo-json-doc.h"

struct _TlspyoJsonDoc {
  JsonNode   *root;
  GArray     *values;     /* ValueInfo, in document (pre-)order */
  GHashTable *node_index; /* JsonNode* -> index into values, plus one */
};

typedef struct {
  TlspyoJsonPosition value;
  TlspyoJsonPosition key;  /* line 0 when the value is not an object member */
} ValueInfo;

typedef struct {
  const char *data;
  gsize       length;
  gsize       pos;
  guint       line;
  gsize       line_start;
  gsize       column_offset;  /* a position on the current line whose column is known */
  guint       column;
  guint       depth;
  GArray     *values;
  GError    **error;
} Scanner;

static TlspyoJsonPosition
scanner_position_at (Scanner *s,
                     gsize    offset)
{
  TlspyoJsonPosition position;

  /* Everything before the offset is valid UTF-8 without NUL: the text was
   * validated before scanning started. Columns are counted on from the
   * last one asked for, so that a long line costs linear time. */
  if (s->column_offset < s->line_start || s->column_offset > offset)
    {
      s->column_offset = s->line_start;
      s->column = 1;
    }
  s->column += (guint) g_utf8_strlen (s->data + s->column_offset,
                                      (gssize) (offset - s->column_offset));
  s->column_offset = offset;
  position.line = s->line;
  position.column = s->column;
  return position;
}

static gboolean
scanner_fail_at (Scanner    *s,
                 gsize       offset,
                 const char *format,
                 ...) G_GNUC_PRINTF (3, 4);

static gboolean
scanner_fail_at (Scanner    *s,
                 gsize       offset,
                 const char *format,
                 ...)
{
  TlspyoJsonPosition position = scanner_position_at (s, offset);
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (s->error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
               "line %u, column %u: %s", position.line, position.column, message);
  return FALSE;
}

/* Names what sits at the offset, for "unexpected ..." messages: a word
 * such as ‘NaN’ or ‘True’ whole, anything else as one character. */
static char *
scanner_describe_at (Scanner *s,
                     gsize    offset)
{
  const char *p = s->data + offset;
  gsize n = 0;
  gunichar c;

  if (offset >= s->length)
    return g_strdup ("the end of the text");
  while (offset + n < s->length && n < 16 && (g_ascii_isalnum (p[n]) || p[n] == '_'))
    n++;
  if (n > 1)
    return g_strdup_printf ("‘%.*s’", (int) n, p);
  c = g_utf8_get_char (p);
  if (g_unichar_isgraph (c))
    return g_strdup_printf ("‘%.*s’", (int) (g_utf8_next_char (p) - p), p);
  return g_strdup_printf ("character U+%04X", c);
}

static const char *
scanner_hint_at (Scanner *s,
                 gsize    offset)
{
  if (offset >= s->length)
    return "";
  switch (s->data[offset])
    {
    case '/':
    case '#':
      return " (JSON has no comments)";
    case '\'':
      return " (JSON strings take double quotes)";
    case 'N':
    case 'I':
      return " (JSON has no NaN or Infinity)";
    case 'T':
    case 'F':
      return " (true and false are lowercase)";
    default:
      return "";
    }
}

static void
scanner_skip_whitespace (Scanner *s)
{
  while (s->pos < s->length)
    {
      char c = s->data[s->pos];

      if (c == '\n')
        {
          s->line++;
          s->line_start = s->pos + 1;
        }
      else if (c != ' ' && c != '\t' && c != '\r')
        return;
      s->pos++;
    }
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Reads the four hex digits of a \u escape at s->pos. */
static gboolean
scanner_read_hex4 (Scanner  *s,
                   gsize     escape_start,
                   gunichar *out)
{
  gunichar value = 0;

  if (s->length - s->pos < 4)
    return scanner_fail_at (s, escape_start, "a \\u escape needs four hexadecimal digits");
  for (int i = 0; i < 4; i++)
    {
      int digit = hex_value (s->data[s->pos + i]);

      if (digit < 0)
        return scanner_fail_at (s, escape_start, "a \\u escape needs four hexadecimal digits");
      value = value * 16 + (gunichar) digit;
    }
  s->pos += 4;
  *out = value;
  return TRUE;
}

/* Scans a string starting at the opening quote; when @out is given the
 * decoded text is appended to it (object keys are compared decoded). */
static gboolean
scanner_string (Scanner *s,
                GString *out)
{
  gsize start = s->pos;

  s->pos++;
  while (s->pos < s->length)
    {
      guchar c = (guchar) s->data[s->pos];

      if (c == '"')
        {
          s->pos++;
          return TRUE;
        }
      if (c == '\\')
        {
          gsize escape_start = s->pos;
          gunichar unit, low;

          if (s->pos + 1 >= s->length)
            break;
          s->pos += 2;
          switch (s->data[escape_start + 1])
            {
            case '"':  unit = '"'; break;
            case '\\': unit = '\\'; break;
            case '/':  unit = '/'; break;
            case 'b':  unit = '\b'; break;
            case 'f':  unit = '\f'; break;
            case 'n':  unit = '\n'; break;
            case 'r':  unit = '\r'; break;
            case 't':  unit = '\t'; break;
            case 'u':
              if (!scanner_read_hex4 (s, escape_start, &unit))
                return FALSE;
              if (unit >= 0xDC00 && unit <= 0xDFFF)
                return scanner_fail_at (s, escape_start,
                                        "\\u%04X is the second half of a surrogate pair "
                                        "without a first half: encode the character whole",
                                        unit);
              if (unit >= 0xD800 && unit <= 0xDBFF)
                {
                  gsize low_start = s->pos;

                  if (s->length - s->pos < 2 || s->data[s->pos] != '\\' ||
                      s->data[s->pos + 1] != 'u')
                    return scanner_fail_at (s, escape_start,
                                            "\\u%04X starts a surrogate pair but no \\uDC00-\\uDFFF "
                                            "follows it: encode the character whole", unit);
                  s->pos += 2;
                  if (!scanner_read_hex4 (s, low_start, &low))
                    return FALSE;
                  if (low < 0xDC00 || low > 0xDFFF)
                    return scanner_fail_at (s, escape_start,
                                            "\\u%04X starts a surrogate pair but \\u%04X does not "
                                            "end one: encode the character whole", unit, low);
                  unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                }
              if (unit == 0)
                return scanner_fail_at (s, escape_start,
                                        "\\u0000 cannot be in a string: GVariant strings "
                                        "end at NUL; send bytes as an array of numbers");
              break;
            default:
              {
                /* The whole character: one byte of a multi-byte one would
                 * make the message invalid UTF-8. */
                const char *bad = s->data + escape_start + 1;

                return scanner_fail_at (s, escape_start,
                                        "invalid escape ‘\\%.*s’: JSON allows \\\" \\\\ \\/ "
                                        "\\b \\f \\n \\r \\t and \\uXXXX",
                                        (int) (g_utf8_next_char (bad) - bad), bad);
              }
            }
          if (out != NULL)
            g_string_append_unichar (out, unit);
          continue;
        }
      if (c < 0x20)
        {
          if (c == '\n')
            return scanner_fail_at (s, s->pos, "the string that starts at column %u runs "
                                    "past the end of the line: close it with \", or write "
                                    "a line break as \\n", scanner_position_at (s, start).column);
          return scanner_fail_at (s, s->pos, "control character U+%04X in a string: write it "
                                  "as the escape \\u%04x", c, c);
        }
      if (out != NULL)
        g_string_append_c (out, (char) c);
      s->pos++;
    }
  return scanner_fail_at (s, start, "the string is not closed: add the missing \"");
}

static gboolean
scanner_digits (Scanner    *s,
                const char *after)
{
  gsize start = s->pos;

  while (s->pos < s->length && g_ascii_isdigit (s->data[s->pos]))
    s->pos++;
  if (s->pos == start)
    {
      g_autofree char *found = scanner_describe_at (s, s->pos);
      return scanner_fail_at (s, s->pos, "expected a digit after %s, found %s", after, found);
    }
  return TRUE;
}

static gboolean
scanner_number (Scanner *s)
{
  gsize start = s->pos;
  gboolean integer = TRUE;
  g_autofree char *text = NULL;

  if (s->data[s->pos] == '-')
    s->pos++;
  if (s->pos < s->length && s->data[s->pos] == '0')
    {
      s->pos++;
      if (s->pos < s->length && g_ascii_isdigit (s->data[s->pos]))
        return scanner_fail_at (s, start, "numbers cannot have leading zeros");
    }
  else if (!scanner_digits (s, "‘-’"))
    return FALSE;
  if (s->pos < s->length && s->data[s->pos] == '.')
    {
      integer = FALSE;
      s->pos++;
      if (!scanner_digits (s, "the decimal point"))
        return FALSE;
    }
  if (s->pos < s->length && (s->data[s->pos] == 'e' || s->data[s->pos] == 'E'))
    {
      integer = FALSE;
      s->pos++;
      if (s->pos < s->length && (s->data[s->pos] == '+' || s->data[s->pos] == '-'))
        s->pos++;
      if (!scanner_digits (s, "the exponent"))
        return FALSE;
    }

  text = g_strndup (s->data + start, s->pos - start);
  if (integer)
    {
      gint64 value;

      if (!g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &value, NULL))
        return scanner_fail_at (s, start, "the integer %s is out of range: integers must lie "
                                "between %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT,
                                text, G_MININT64, G_MAXINT64);
    }
  else if (!isfinite (g_ascii_strtod (text, NULL)))
    return scanner_fail_at (s, start, "the number %s is too large for a double", text);
  return TRUE;
}

static gboolean
scanner_unexpected_value (Scanner *s)
{
  g_autofree char *found = scanner_describe_at (s, s->pos);

  return scanner_fail_at (s, s->pos, "unexpected %s: expected a value (an object, array, "
                          "string, number, true, false or null)%s",
                          found, scanner_hint_at (s, s->pos));
}

static gboolean
scanner_literal (Scanner    *s,
                 const char *word)
{
  gsize n = strlen (word);

  if (s->length - s->pos < n || memcmp (s->data + s->pos, word, n) != 0 ||
      (s->pos + n < s->length && g_ascii_isalnum (s->data[s->pos + n])))
    return scanner_unexpected_value (s);
  s->pos += n;
  return TRUE;
}

static gboolean scanner_value (Scanner                  *s,
                               const TlspyoJsonPosition *key);

static gboolean
scanner_enter (Scanner *s)
{
  if (s->depth >= TLSPYO_JSON_MAX_DEPTH)
    return scanner_fail_at (s, s->pos, "nested more than %d levels deep: flatten the data",
                            TLSPYO_JSON_MAX_DEPTH);
  s->depth++;
  s->pos++;
  return TRUE;
}

/* Consumes @close, which ends the object or array entered last, if it
 * comes next. */
static gboolean
scanner_leave (Scanner *s,
               char     close)
{
  if (s->pos < s->length && s->data[s->pos] == close)
    {
      s->pos++;
      s->depth--;
      return TRUE;
    }
  return FALSE;
}

/* After @what (a member of the object, or an element of the array, opened
 * at @open): skips a ‘,’ and sets *@more, or consumes @close and unsets it. */
static gboolean
scanner_next_element (Scanner                  *s,
                      const TlspyoJsonPosition *open,
                      char                      close,
                      const char               *what,
                      gboolean                 *more)
{
  scanner_skip_whitespace (s);
  *more = s->pos < s->length && s->data[s->pos] == ',';
  if (*more)
    {
      s->pos++;
      return TRUE;
    }
  if (scanner_leave (s, close))
    return TRUE;
  {
    g_autofree char *found = scanner_describe_at (s, s->pos);
    return scanner_fail_at (s, s->pos, "expected ‘,’ or ‘%c’ after %s opened at line %u, "
                            "column %u, found %s", close, what, open->line, open->column, found);
  }
}

static gboolean
scanner_object (Scanner *s)
{
  TlspyoJsonPosition open = scanner_position_at (s, s->pos);
  g_autoptr(GHashTable) keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GString) key = g_string_new (NULL);
  gboolean more;

  if (!scanner_enter (s))
    return FALSE;
  scanner_skip_whitespace (s);
  if (scanner_leave (s, '}'))
    return TRUE;

  do
    {
      TlspyoJsonPosition key_position;
      gsize key_start;

      scanner_skip_whitespace (s);
      key_start = s->pos;
      if (s->pos >= s->length || s->data[s->pos] != '"')
        {
          g_autofree char *found = scanner_describe_at (s, s->pos);

          if (s->pos < s->length && s->data[s->pos] == '}')
            return scanner_fail_at (s, s->pos, "a ‘,’ must not follow the last member of "
                                    "an object: remove it");
          return scanner_fail_at (s, s->pos, "expected a member name in double quotes, "
                                  "found %s%s", found, scanner_hint_at (s, s->pos));
        }
      key_position = scanner_position_at (s, key_start);
      g_string_truncate (key, 0);
      if (!scanner_string (s, key))
        return FALSE;
      if (g_hash_table_contains (keys, key->str))
        return scanner_fail_at (s, key_start, "the key “%s” appears twice in this object: "
                                "keep one", key->str);
      g_hash_table_add (keys, g_strdup (key->str));

      scanner_skip_whitespace (s);
      if (s->pos >= s->length || s->data[s->pos] != ':')
        {
          g_autofree char *found = scanner_describe_at (s, s->pos);
          return scanner_fail_at (s, s->pos, "expected ‘:’ after the member name “%s”, found %s",
                                  key->str, found);
        }
      s->pos++;
      scanner_skip_whitespace (s);
      if (!scanner_value (s, &key_position) ||
          !scanner_next_element (s, &open, '}', "a member of the object", &more))
        return FALSE;
    }
  while (more);
  return TRUE;
}

static gboolean
scanner_array (Scanner *s)
{
  TlspyoJsonPosition open = scanner_position_at (s, s->pos);
  gboolean more;

  if (!scanner_enter (s))
    return FALSE;
  scanner_skip_whitespace (s);
  if (scanner_leave (s, ']'))
    return TRUE;

  do
    {
      scanner_skip_whitespace (s);
      if (s->pos < s->length && s->data[s->pos] == ']')
        return scanner_fail_at (s, s->pos, "a ‘,’ must not follow the last element of an "
                                "array: remove it");
      if (!scanner_value (s, NULL) ||
          !scanner_next_element (s, &open, ']', "an element of the array", &more))
        return FALSE;
    }
  while (more);
  return TRUE;
}

static gboolean
scanner_value (Scanner                  *s,
               const TlspyoJsonPosition *key)
{
  ValueInfo info = { { 0, 0 }, { 0, 0 } };

  if (s->pos >= s->length)
    return scanner_fail_at (s, s->pos, "the text ends where a value was expected");

  info.value = scanner_position_at (s, s->pos);
  if (key != NULL)
    info.key = *key;
  g_array_append_val (s->values, info);

  switch (s->data[s->pos])
    {
    case '{':
      return scanner_object (s);
    case '[':
      return scanner_array (s);
    case '"':
      return scanner_string (s, NULL);
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      return scanner_number (s);
    case 't':
      return scanner_literal (s, "true");
    case 'f':
      return scanner_literal (s, "false");
    case 'n':
      return scanner_literal (s, "null");
    default:
      return scanner_unexpected_value (s);
    }
}

/* Pairs json-glib's nodes with the scanner's positions: both list the
 * values in document order (objects keep their members in insertion
 * order, and duplicate keys were refused). */
static void
index_nodes (TlspyoJsonDoc *doc,
             JsonNode      *node,
             guint         *next)
{
  g_hash_table_insert (doc->node_index, node, GUINT_TO_POINTER (++*next));

  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObjectIter iter;
      const char *name;
      JsonNode *member;

      json_object_iter_init_ordered (&iter, json_node_get_object (node));
      while (json_object_iter_next_ordered (&iter, &name, &member))
        index_nodes (doc, member, next);
    }
  else if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *array = json_node_get_array (node);
      guint n = json_array_get_length (array);

      for (guint i = 0; i < n; i++)
        index_nodes (doc, json_array_get_element (array, i), next);
    }
}

/**
 * tlspyo_json_doc_parse:
 * @data: the JSON text, not necessarily nul-terminated
 * @length: its length in bytes
 * @first_line: the line number of the text's first line, for messages
 *   about text that is part of a larger input
 * @error: return location for a #GError
 *
 * Parses exactly one JSON value. Errors are %TLSPYO_ERROR_INVALID_ARGUMENT
 * with a message starting with "line L, column C: ".
 *
 * Returns: (transfer full): the document, or %NULL with @error set
 */
TlspyoJsonDoc *
tlspyo_json_doc_parse (const char  *data,
                       gsize        length,
                       guint        first_line,
                       GError     **error)
{
  g_autoptr(TlspyoJsonDoc) doc = NULL;
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local_error = NULL;
  Scanner s = { 0 };
  const char *end;
  guint n_nodes = 0;
  gsize bom = 0;

  g_return_val_if_fail (data != NULL || length == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  s.data = data;
  s.length = length;
  s.line = first_line;
  s.column = 1;
  s.error = error;

  /* Some editors start UTF-8 files with a byte order mark. */
  if (length >= 3 && memcmp (data, "\xEF\xBB\xBF", 3) == 0)
    s.pos = s.line_start = bom = 3;

  if (!g_utf8_validate_len (data, length, &end))
    {
      gsize bad = (gsize) (end - data);

      /* Positions before the bad byte are valid, so they can be counted. */
      while (s.pos < bad)
        {
          if (data[s.pos] == '\n')
            {
              s.line++;
              s.line_start = s.pos + 1;
            }
          s.pos++;
        }
      if (*end == '\0')
        scanner_fail_at (&s, bad, "the text contains a NUL byte: remove it");
      else
        scanner_fail_at (&s, bad, "the text is not valid UTF-8 (byte 0x%02X): save it as UTF-8",
                         (guint) (guchar) *end);
      return NULL;
    }

  doc = g_new0 (TlspyoJsonDoc, 1);
  doc->values = g_array_new (FALSE, FALSE, sizeof (ValueInfo));
  doc->node_index = g_hash_table_new (NULL, NULL);
  s.values = doc->values;

  scanner_skip_whitespace (&s);
  if (s.pos >= s.length)
    {
      scanner_fail_at (&s, s.pos, "there is no JSON value, only blank space: give one value");
      return NULL;
    }
  if (!scanner_value (&s, NULL))
    return NULL;
  scanner_skip_whitespace (&s);
  if (s.pos < s.length)
    {
      g_autofree char *found = scanner_describe_at (&s, s.pos);
      scanner_fail_at (&s, s.pos, "unexpected %s after the end of the JSON value: give "
                       "exactly one value", found);
      return NULL;
    }

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, data + bom, (gssize) (length - bom), &local_error))
    {
      /* The check above should have caught anything json-glib refuses. */
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "line %u: json-glib could not parse the text: %s",
                   first_line, local_error->message);
      return NULL;
    }
  doc->root = json_parser_steal_root (parser);
  if (doc->root == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "line %u: json-glib found no value in the text: give one value", first_line);
      return NULL;
    }

  index_nodes (doc, doc->root, &n_nodes);
  if (n_nodes != doc->values->len)
    {
      /* A position at the wrong value would mislead; none is better. */
      g_hash_table_remove_all (doc->node_index);
    }

  return g_steal_pointer (&doc);
}

JsonNode *
tlspyo_json_doc_get_root (TlspyoJsonDoc *doc)
{
  g_return_val_if_fail (doc != NULL, NULL);

  return doc->root;
}

static const ValueInfo *
lookup (TlspyoJsonDoc *doc,
        JsonNode      *node)
{
  guint index = GPOINTER_TO_UINT (g_hash_table_lookup (doc->node_index, node));

  if (index == 0 || index > doc->values->len)
    return NULL;
  return &g_array_index (doc->values, ValueInfo, index - 1);
}

/* Where @node's value starts. FALSE when @node is not from @doc. */
gboolean
tlspyo_json_doc_get_position (TlspyoJsonDoc      *doc,
                              JsonNode           *node,
                              TlspyoJsonPosition *position)
{
  const ValueInfo *info;

  g_return_val_if_fail (doc != NULL, FALSE);
  g_return_val_if_fail (position != NULL, FALSE);

  info = lookup (doc, node);
  if (info == NULL)
    return FALSE;
  *position = info->value;
  return TRUE;
}

/* Where the key of the object member whose value is @node starts. */
gboolean
tlspyo_json_doc_get_key_position (TlspyoJsonDoc      *doc,
                                  JsonNode           *node,
                                  TlspyoJsonPosition *position)
{
  const ValueInfo *info;

  g_return_val_if_fail (doc != NULL, FALSE);
  g_return_val_if_fail (position != NULL, FALSE);

  info = lookup (doc, node);
  if (info == NULL || info->key.line == 0)
    return FALSE;
  *position = info->key;
  return TRUE;
}

/* "an object", "a string", "the number 3", ... for "found ..." messages. */
char *
tlspyo_json_doc_describe_node (JsonNode *node)
{
  switch (json_node_get_node_type (node))
    {
    case JSON_NODE_OBJECT:
      return g_strdup ("an object");
    case JSON_NODE_ARRAY:
      return g_strdup ("an array");
    case JSON_NODE_NULL:
      return g_strdup ("null");
    case JSON_NODE_VALUE:
    default:
      break;
    }

  switch (json_node_get_value_type (node))
    {
    case G_TYPE_BOOLEAN:
      return g_strdup (json_node_get_boolean (node) ? "true" : "false");
    case G_TYPE_INT64:
      return g_strdup_printf ("the integer %" G_GINT64_FORMAT, json_node_get_int (node));
    case G_TYPE_DOUBLE:
      {
        char buffer[G_ASCII_DTOSTR_BUF_SIZE];

        /* "3000.0" stays visibly a non-integer. */
        g_ascii_dtostr (buffer, sizeof buffer, json_node_get_double (node));
        return g_strdup_printf ("the number %s%s", buffer,
                                strpbrk (buffer, ".eEn") ? "" : ".0");
      }
    case G_TYPE_STRING:
      return g_strdup ("a string");
    default:
      return g_strdup ("a value");
    }
}

void
tlspyo_json_doc_free (TlspyoJsonDoc *doc)
{
  if (doc == NULL)
    return;
  g_clear_pointer (&doc->root, json_node_unref);
  g_array_unref (doc->values);
  g_hash_table_unref (doc->node_index);
  g_free (doc);
}
