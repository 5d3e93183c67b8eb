/* SPDX-License-Identifier: MIT */
/* JSON <-> GVariant for `tlspyo send` and `tlspyo receive`, and the strict
 * JSON reading under it: what converts to what, and that every refusal
 * says where. */
#include <math.h>
#include <string.h>

#include "tlspyo-json-variant.h"

static void
assert_contains (const char *haystack,
                 const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("expected “%s” in “%s”", needle, haystack);
}

static GVariant *
parse (const char *text,
       const char *type,
       GError    **error)
{
  g_autoptr(GVariantType) vtype = type ? g_variant_type_new (type) : NULL;

  return tlspyo_json_variant_parse (text, strlen (text), 1, vtype, error);
}

typedef struct {
  const char *json;
  const char *type;      /* NULL: natural mapping */
  const char *expected;  /* g_variant_print (value, TRUE) */
} Conversion;

static void
test_natural (void)
{
  const Conversion cases[] = {
    { "1", NULL, "int64 1" },
    { "-9223372036854775808", NULL, "int64 -9223372036854775808" },
    { "1.5", NULL, "1.5" },
    { "1e3", NULL, "1000.0" },
    { "-0", NULL, "int64 0" },
    { "\"héllo ☃\"", NULL, "'héllo ☃'" },
    { "\"\\u00e9\\ud83d\\ude00\\n\\/\"", NULL, "'é😀\\n/'" },
    { "true", NULL, "true" },
    { "null", NULL, "@mv nothing" },
    { "[]", NULL, "@av []" },
    { "{}", NULL, "@a{sv} {}" },
    { " [1, \"a\", [true]] ", NULL, "[<int64 1>, <'a'>, <[<true>]>]" },
    { "{\"b\": 2, \"a\": {\"c\": null}}", NULL,
      "{'b': <int64 2>, 'a': <{'c': <@mv nothing>}>}" },
    { "\xEF\xBB\xBF" "7", NULL, "int64 7" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = parse (cases[i].json, cases[i].type, &error);
      g_autofree char *printed = NULL;

      g_assert_no_error (error);
      g_assert_false (g_variant_is_floating (value));
      printed = g_variant_print (value, TRUE);
      g_assert_cmpstr (printed, ==, cases[i].expected);
    }
}

static void
test_typed (void)
{
  const Conversion cases[] = {
    { "255", "y", "byte 0xff" },
    { "-32768", "n", "int16 -32768" },
    { "65535", "q", "uint16 65535" },
    { "-2147483648", "i", "-2147483648" },
    { "4294967295", "u", "uint32 4294967295" },
    { "9223372036854775807", "t", "uint64 9223372036854775807" },
    { "3", "h", "handle 3" },
    { "1", "d", "1.0" },
    { "true", "b", "true" },
    { "\"/org/example/Thing\"", "o", "objectpath '/org/example/Thing'" },
    { "\"a{sv}\"", "g", "signature 'a{sv}'" },
    { "[1, 2]", "ay", "[byte 0x01, 0x02]" },
    { "[]", "as", "@as []" },
    { "[\"a\", 3, 1.5, false]", "(sidb)", "('a', 3, 1.5, false)" },
    { "[]", "()", "()" },
    { "{\"1\": \"a\", \"-2\": \"b\"}", "a{is}", "{1: 'a', -2: 'b'}" },
    { "{\"true\": 1}", "a{bi}", "{true: 1}" },
    { "{\"0.5\": 1}", "a{di}", "{0.5: 1}" },
    { "{\"/a\": 1}", "a{oi}", "{objectpath '/a': 1}" },
    { "null", "mi", "@mi nothing" },
    { "5", "mi", "@mi 5" },
    { "[null, 1]", "ami", "[@mi nothing, 1]" },
    { "{\"x\": [1, 2]}", "v", "<{'x': <[<int64 1>, <int64 2>]>}>" },
    { "{\"x\": 1}", "a{sv}", "{'x': <int64 1>}" },
    { "[\"k\", 2]", "{si}", "{'k', 2}" },
    { "[[1, \"a\"], [2, \"b\"]]", "a(is)", "[(1, 'a'), (2, 'b')]" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = parse (cases[i].json, cases[i].type, &error);
      g_autofree char *printed = NULL;

      g_assert_no_error (error);
      g_assert_cmpstr (g_variant_get_type_string (value), ==, cases[i].type);
      printed = g_variant_print (value, TRUE);
      g_assert_cmpstr (printed, ==, cases[i].expected);
    }
}

typedef struct {
  const char *json;
  const char *type;
  const char *message[3];  /* substrings the error message must hold */
} Refusal;

static void
check_refusals (const Refusal *cases,
                gsize          n_cases)
{
  for (gsize i = 0; i < n_cases; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = parse (cases[i].json, cases[i].type, &error);

      g_assert_null (value);
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
      for (gsize j = 0; j < G_N_ELEMENTS (cases[i].message) && cases[i].message[j]; j++)
        assert_contains (error->message, cases[i].message[j]);
    }
}

static void
test_type_mismatch (void)
{
  const Refusal cases[] = {
    { "300", "y", { "line 1, column 1", "at $", "from 0 to 255" } },
    { "-1", "t", { "from 0 to 9223372036854775807", "found the integer -1" } },
    { "1.5", "i", { "from -2147483648 to 2147483647", "found the number 1.5" } },
    { "1", "s", { "expected a string", "found the integer 1" } },
    { "\"x\"", "b", { "expected true or false", "found a string" } },
    { "\"not a path\"", "o", { "object path" } },
    { "\"zz\"", "g", { "type signature" } },
    { "[1, \"a\", 3]", "(is)", { "line 1, column 1", "an array of 2 elements", "found an array of 3" } },
    { "[1]", "(is)", { "an array of 2 elements" } },
    { "[1,\n 2,\n   \"x\"]", "ai", { "line 3, column 4", "at $[2]", "“i”" } },
    { "{\"a\": {\"b c\": [1, true]}}", "a{sa{sai}}",
      { "line 1, column 19", "$.a[\"b c\"][1]", "found true" } },
    { "{\"x\": 1}", "a{is}", { "line 1, column 2", "the key “x”", "from -2147483648" } },
    { "{\"x\": 1}", "as", { "expected an array", "found an object" } },
    { "[1]", "a{sv}", { "expected an object", "found an array" } },
    { "null", "s", { "found null" } },
  };

  check_refusals (cases, G_N_ELEMENTS (cases));
}

static void
test_syntax (void)
{
  const Refusal cases[] = {
    { "", NULL, { "line 1, column 1", "no JSON value" } },
    { " \n\t", NULL, { "no JSON value" } },
    { "garbage", NULL, { "line 1, column 1", "‘garbage’" } },
    { "{\"a\": 1,}", NULL, { "line 1, column 9", "remove it" } },
    { "[1, 2,]", NULL, { "line 1, column 7", "last element" } },
    { "[1 2]", NULL, { "line 1, column 4", "expected ‘,’ or ‘]’" } },
    { "{\"a\" 1}", NULL, { "line 1, column 6", "expected ‘:’" } },
    { "{a: 1}", NULL, { "line 1, column 2", "member name in double quotes" } },
    { "{'a': 1}", NULL, { "double quotes" } },
    { "[1] [2]", NULL, { "line 1, column 5", "exactly one value" } },
    { "1 2", NULL, { "line 1, column 3", "exactly one value" } },
    { "{\"a\": 1, \"a\": 2}", NULL, { "line 1, column 10", "appears twice" } },
    { "// c\n1", NULL, { "no comments" } },
    { "NaN", NULL, { "‘NaN’", "no NaN" } },
    { "True", NULL, { "lowercase" } },
    { "01", NULL, { "leading zeros" } },
    { "-", NULL, { "expected a digit after ‘-’" } },
    { "1.", NULL, { "after the decimal point" } },
    { "1e", NULL, { "after the exponent" } },
    { "9223372036854775808", NULL, { "out of range" } },
    { "-9223372036854775809", NULL, { "out of range" } },
    { "18446744073709551615", "t", { "out of range" } },
    { "1e400", NULL, { "too large for a double" } },
    { "\"abc", NULL, { "line 1, column 1", "not closed" } },
    { "\"a\nb\"", NULL, { "past the end of the line" } },
    { "\"a\tb\"", NULL, { "control character U+0009" } },
    { "\"\\x\"", NULL, { "invalid escape" } },
    { "\"\\u12\"", NULL, { "four hexadecimal digits" } },
    { "\"\\u0000\"", NULL, { "\\u0000", "NUL" } },
    { "\"\\ud800\"", NULL, { "surrogate pair" } },
    { "\"\\udc00\"", NULL, { "second half" } },
    { "\"\\ud800\\u0041\"", NULL, { "does not end one" } },
    { "[1,\n  2,\n  @]", NULL, { "line 3, column 3", "‘@’" } },
    { "\"caf\xC3\"", NULL, { "not valid UTF-8" } },
    { "[1,\n\xff]", NULL, { "line 2, column 1", "not valid UTF-8 (byte 0xFF)" } },
  };

  check_refusals (cases, G_N_ELEMENTS (cases));
}

static void
test_nul_byte (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = tlspyo_json_variant_parse ("[1,\0 2]", 7, 1, NULL, &error);

  g_assert_null (value);
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  assert_contains (error->message, "line 1, column 4");
  assert_contains (error->message, "NUL byte");
}

static void
test_first_line (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = tlspyo_json_variant_parse ("[1, x]", 6, 42, NULL, &error);

  g_assert_null (value);
  assert_contains (error->message, "line 42, column 5");

  g_clear_error (&error);
  {
    g_autoptr(GVariantType) type = g_variant_type_new ("as");
    g_autoptr(GVariant) other = tlspyo_json_variant_parse ("[\"a\", 1]", 8, 7, type, &error);

    g_assert_null (other);
    assert_contains (error->message, "line 7, column 7");
  }
}

static void
test_depth (void)
{
  g_autoptr(GString) ok = g_string_new (NULL);
  g_autoptr(GString) deep = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;

  for (int i = 0; i < TLSPYO_JSON_MAX_DEPTH; i++)
    g_string_append_c (ok, '[');
  for (int i = 0; i < TLSPYO_JSON_MAX_DEPTH; i++)
    g_string_append_c (ok, ']');
  value = tlspyo_json_variant_parse (ok->str, ok->len, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (value);

  deep = g_string_new ("[");
  g_string_append (deep, ok->str);
  g_string_append_c (deep, ']');
  g_clear_pointer (&value, g_variant_unref);
  value = tlspyo_json_variant_parse (deep->str, deep->len, 1, NULL, &error);
  g_assert_null (value);
  assert_contains (error->message, "nested more than 64 levels");

  /* Far deeper than any stack would take if the parser recursed freely. */
  g_clear_error (&error);
  g_string_truncate (deep, 0);
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  value = tlspyo_json_variant_parse (deep->str, deep->len, 1, NULL, &error);
  g_assert_null (value);
  assert_contains (error->message, "line 1, column 65");
}

static void
test_indefinite_type (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = parse ("[1]", "a*", &error);

  g_assert_null (value);
  assert_contains (error->message, "not a definite type");
}

typedef struct {
  const char *variant;  /* g_variant_parse() text */
  const char *json;
} Output;

static void
test_to_json (void)
{
  const Output cases[] = {
    { "true", "true" },
    { "byte 255", "255" },
    { "int16 -5", "-5" },
    { "uint16 5", "5" },
    { "int32 -7", "-7" },
    { "uint32 4294967295", "4294967295" },
    { "int64 -9223372036854775808", "-9223372036854775808" },
    { "uint64 18446744073709551615", "18446744073709551615" },
    { "handle 2", "2" },
    { "1.0", "1.0" },
    { "0.1", "0.1" },
    { "-0.0", "-0.0" },
    { "1e300", "1e+300" },
    { "0.30000000000000004", "0.30000000000000004" },
    { "'a\"b\\\\c\\n\\t'", "\"a\\\"b\\\\c\\n\\t\"" },
    { "'\\u001b[31m\\u007f\\u009b\\u2028é'", "\"\\u001b[31m\\u007f\\u009b\\u2028é\"" },
    { "objectpath '/a/b'", "\"/a/b\"" },
    { "signature 'a{sv}'", "\"a{sv}\"" },
    { "<<int32 3>>", "3" },
    { "@mi nothing", "null" },
    { "@mi 4", "4" },
    { "@as []", "[]" },
    { "@a{sv} {}", "{}" },
    { "[1, 2, 3]", "[1,2,3]" },
    { "b'ab'", "[97,98,0]" },
    { "('x', 1, [true])", "[\"x\",1,[true]]" },
    { "()", "[]" },
    { "{'k': <1>, 'l': <'m'>}", "{\"k\":1,\"l\":\"m\"}" },
    { "{1: 'a', -2: 'b'}", "{\"1\":\"a\",\"-2\":\"b\"}" },
    { "{true: 0.5}", "{\"true\":0.5}" },
    { "{objectpath '/p': 1}", "{\"/p\":1}" },
    { "@{si} {'k', 1}", "[\"k\",1]" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = g_variant_parse (NULL, cases[i].variant, NULL, NULL, &error);
      g_autofree char *json = NULL;

      g_assert_no_error (error);
      json = tlspyo_json_variant_to_json (value);
      g_assert_cmpstr (json, ==, cases[i].json);
    }
}

static void
test_non_finite (void)
{
  g_autoptr(GVariant) values = g_variant_ref_sink (g_variant_new_parsed (
    "[%d, %d, %d]", (double) NAN, (double) INFINITY, -(double) INFINITY));
  g_autofree char *json = tlspyo_json_variant_to_json (values);

  /* JSON has no NaN or infinity: null, as JavaScript writes them. */
  g_assert_cmpstr (json, ==, "[null,null,null]");
}

/* What `receive` prints, `send --type` with the same type reads back. */
static void
test_round_trip (void)
{
  const char *values[] = {
    "byte 7", "int16 -3", "uint16 3", "int32 -100000", "uint32 100000",
    "int64 -5", "uint64 5", "handle 1", "3.25", "1.0", "-0.0", "1e-300", "123456789.123",
    "'text with \"quotes\", \\\\, \\u0001 and ☃'", "objectpath '/x'", "signature 'a{sv}'",
    "true", "@mi nothing", "@ms 'x'", "[byte 1, 2, 255]", "@as []",
    "{'a': <int64 1>, 'b': <[<'c'>]>}", "{1: 'x', 2: 'y'}", "{false: 1.5}",
    "(1, 'two', [3.0], {'four': <int64 4>})", "[(1, 'a'), (2, 'b')]",
    "<(int64 1, 'x')>",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (values); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = g_variant_parse (NULL, values[i], NULL, NULL, &error);
      g_autoptr(GVariant) back = NULL;
      g_autofree char *json = NULL;

      g_assert_no_error (error);
      json = tlspyo_json_variant_to_json (value);
      back = tlspyo_json_variant_parse (json, strlen (json), 1, g_variant_get_type (value), &error);
      g_assert_no_error (error);
      if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
        {
          /* A variant's content is written as itself, and read back with
           * the natural mapping: the value survives, the inner type may not. */
          g_autofree char *again = tlspyo_json_variant_to_json (back);
          g_assert_cmpstr (again, ==, json);
          continue;
        }
      if (!g_variant_equal (value, back))
        {
          g_autofree char *a = g_variant_print (value, TRUE);
          g_autofree char *b = g_variant_print (back, TRUE);
          g_error ("%s went out as %s and came back as %s", a, json, b);
        }
    }
}

/* The reader will be fuzzed; meanwhile, every truncation and many
 * mutations of a rich document must fail cleanly or succeed. */
static void
test_mutations (void)
{
  const char *seed = "{\"a\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\", null, true, false],\n"
                     " \"b\": {\"c\": [[], {}], \"d\": \"\\\\\\\"\"}}";
  gsize len = strlen (seed);
  g_autoptr(GVariantType) type = g_variant_type_new ("a{sv}");
  GRand *rand = g_rand_new_with_seed (20240601);

  for (gsize cut = 0; cut <= len; cut++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = tlspyo_json_variant_parse (seed, cut, 1, NULL, &error);

      g_assert_true ((value != NULL) == (error == NULL));
      if (cut < len)
        g_assert_null (value);
    }

  for (int round = 0; round < 5000; round++)
    {
      g_autofree char *copy = g_strndup (seed, len);
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = NULL;
      int n = g_rand_int_range (rand, 1, 4);

      for (int i = 0; i < n; i++)
        copy[g_rand_int_range (rand, 0, (gint32) len)] = (char) g_rand_int_range (rand, 1, 256);
      value = tlspyo_json_variant_parse (copy, len, 1, round % 2 ? type : NULL, &error);
      g_assert_true ((value != NULL) == (error == NULL));
      if (error != NULL)
        g_assert_true (g_str_has_prefix (error->message, "line "));
    }
  g_rand_free (rand);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cli/json/natural", test_natural);
  g_test_add_func ("/cli/json/typed", test_typed);
  g_test_add_func ("/cli/json/type-mismatch", test_type_mismatch);
  g_test_add_func ("/cli/json/syntax", test_syntax);
  g_test_add_func ("/cli/json/nul-byte", test_nul_byte);
  g_test_add_func ("/cli/json/first-line", test_first_line);
  g_test_add_func ("/cli/json/depth", test_depth);
  g_test_add_func ("/cli/json/indefinite-type", test_indefinite_type);
  g_test_add_func ("/cli/json/to-json", test_to_json);
  g_test_add_func ("/cli/json/non-finite", test_non_finite);
  g_test_add_func ("/cli/json/round-trip", test_round_trip);
  g_test_add_func ("/cli/json/mutations", test_mutations);
  return g_test_run ();
}
