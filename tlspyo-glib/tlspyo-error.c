/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-error.h"

/**
 * tlspyo_error_quark:
 *
 * Returns: the quark of the %TLSPYO_ERROR domain.
 *
 * Since: 0.1
 */
G_DEFINE_QUARK (tlspyo-error-quark, tlspyo_error)
