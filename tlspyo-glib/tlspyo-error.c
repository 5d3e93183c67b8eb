/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-error.h"

/**
 * tlspyo_error_quark:
 *
 * Gets the quark of the %TLSPYO_ERROR domain.
 *
 * Returns: the quark of the %TLSPYO_ERROR domain
 *
 * Since: 0.1
 */
GQuark
tlspyo_error_quark (void)
{
  return g_quark_from_static_string ("tlspyo-error-quark");
}
