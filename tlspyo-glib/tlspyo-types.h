/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <glib-object.h>
#include <tlspyo-glib/tlspyo-version-macros.h>

G_BEGIN_DECLS

/**
 * TlspyoSecurity:
 * @TLSPYO_SECURITY_TLS: TLS through GIO's TLS backend (glib-networking); the
 *   endpoint trusts exactly the relay's pinned certificate. The default.
 * @TLSPYO_SECURITY_NONE: plain TCP. Objects and group names travel in clear;
 *   the password is still never sent. Use only on a network you trust.
 *
 * How a relay and its endpoints protect the connection between them. Both
 * sides must use the same value.
 *
 * Since: 0.1
 */
typedef enum {
  TLSPYO_SECURITY_TLS,
  TLSPYO_SECURITY_NONE,
} TlspyoSecurity;

/**
 * TlspyoKeyType:
 * @TLSPYO_KEY_TYPE_ECDSA: ECDSA on the NIST P-256 curve: fast to generate, small. The default.
 * @TLSPYO_KEY_TYPE_RSA: RSA, 3072 bits: for peers that cannot use ECDSA.
 *
 * The kind of private key [func@Tlspyo.credentials_generate_full] creates.
 *
 * Since: 0.1
 */
typedef enum {
  TLSPYO_KEY_TYPE_ECDSA,
  TLSPYO_KEY_TYPE_RSA,
} TlspyoKeyType;

/**
 * TlspyoCredentialsFlags:
 * @TLSPYO_CREDENTIALS_NONE: no flag.
 * @TLSPYO_CREDENTIALS_OVERWRITE: replace `key.pem` and `certificate.pem` when
 *   they exist already. Without it, generating into a folder that has them fails.
 *
 * Flags for [func@Tlspyo.credentials_generate_full].
 *
 * Since: 0.1
 */
typedef enum /*< flags >*/ {
  TLSPYO_CREDENTIALS_NONE = 0,
  TLSPYO_CREDENTIALS_OVERWRITE = 1 << 0,
} TlspyoCredentialsFlags;

/**
 * TlspyoRights:
 * @TLSPYO_RIGHTS_NONE: no right.
 * @TLSPYO_RIGHTS_JOIN: be a member of the group: receive its broadcasts
 *   (and its latest one on joining). Needed to consume from it too.
 * @TLSPYO_RIGHTS_BROADCAST: broadcast objects to the group.
 * @TLSPYO_RIGHTS_PRODUCE: produce objects into the group's queue.
 * @TLSPYO_RIGHTS_CONSUME: take produced objects from the group's queue
 *   ([method@Tlspyo.Endpoint.notify_ready]).
 * @TLSPYO_RIGHTS_ALL: every right.
 *
 * What a named user may do in a group; see [method@Tlspyo.Relay.grant].
 * Endpoints that use the relay's shared password have every right.
 *
 * Since: 0.1
 */
typedef enum /*< flags >*/ {
  TLSPYO_RIGHTS_NONE      = 0,
  TLSPYO_RIGHTS_JOIN      = 1 << 0,
  TLSPYO_RIGHTS_BROADCAST = 1 << 1,
  TLSPYO_RIGHTS_PRODUCE   = 1 << 2,
  TLSPYO_RIGHTS_CONSUME   = 1 << 3,
  TLSPYO_RIGHTS_ALL       = 0xf,
} TlspyoRights;

G_END_DECLS
