/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <glib.h>
#include <tlspyo-glib/tlspyo-version-macros.h>

G_BEGIN_DECLS

/**
 * TLSPYO_ERROR:
 *
 * The error domain of tlspyo-glib. Errors in it have a code of [error@Tlspyo.Error].
 *
 * Since: 0.1
 */
#define TLSPYO_ERROR (tlspyo_error_quark ())

/**
 * TlspyoError:
 * @TLSPYO_ERROR_FAILED: a failure that fits no other code.
 * @TLSPYO_ERROR_INVALID_ARGUMENT: an argument or property has a value that
 *   cannot work (an empty group name, a count of 0, a destination of the wrong type).
 * @TLSPYO_ERROR_AUTHENTICATION: the peer does not know the password, or did
 *   not prove that it does.
 * @TLSPYO_ERROR_GROUP_REFUSED: the relay refused one of the endpoint's groups:
 *   it is not among the accepted groups, or the group is full.
 * @TLSPYO_ERROR_CREDENTIALS: a key or certificate is missing, unreadable or
 *   does not match, or the TLS backend is not installed.
 * @TLSPYO_ERROR_PROTOCOL: the peer sent something that is not the tlspyo-glib
 *   protocol, or violated it (wrong version, malformed frame, object too large).
 * @TLSPYO_ERROR_CLOSED: the connection, endpoint or relay is closed.
 * @TLSPYO_ERROR_TIMED_OUT: the operation did not complete within its timeout.
 * @TLSPYO_ERROR_NETWORK: a network failure: the port is in use, the host
 *   cannot be reached or resolved.
 * @TLSPYO_ERROR_LIMIT: the relay refused a connection or an action because
 *   it reached one of its limits (too many connections, from this address
 *   or in all; too many failed authentications from this address; too many
 *   groups; too many bytes queued in a group). Retrying later may work.
 * @TLSPYO_ERROR_PERMISSION_DENIED: the endpoint's user has no right to do
 *   this in this group (join, broadcast, produce or consume).
 *
 * Error codes in the %TLSPYO_ERROR domain. This enumeration may be extended
 * in later versions.
 *
 * Since: 0.1
 */
typedef enum {
  TLSPYO_ERROR_FAILED,
  TLSPYO_ERROR_INVALID_ARGUMENT,
  TLSPYO_ERROR_AUTHENTICATION,
  TLSPYO_ERROR_GROUP_REFUSED,
  TLSPYO_ERROR_CREDENTIALS,
  TLSPYO_ERROR_PROTOCOL,
  TLSPYO_ERROR_CLOSED,
  TLSPYO_ERROR_TIMED_OUT,
  TLSPYO_ERROR_NETWORK,
  TLSPYO_ERROR_LIMIT,
  TLSPYO_ERROR_PERMISSION_DENIED,
} TlspyoError;

TLSPYO_AVAILABLE_IN_ALL
GQuark tlspyo_error_quark (void);

G_END_DECLS
