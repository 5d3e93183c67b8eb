/* SPDX-License-Identifier: MIT */
#pragma once

/* The relay's JSON configuration (`tlspyo relay --config FILE`): a pure
 * function from bytes to a struct, so that it can be fuzzed. Unknown keys,
 * wrong types and values out of range are errors that name the key and
 * give its line and column. The keys are documented in docs/tlspyo.1.md
 * and data/relay.example.json; keep the three in step. */

#include <tlspyo-glib/tlspyo-glib.h>

G_BEGIN_DECLS

/* `tlspyo relay --stats-interval` and the "stats_interval" key: 0 turns the
 * periodic stats line off; shorter intervals than the minimum would flood
 * the log and keep the relay's worker busy computing snapshots. */
#define TLSPYO_CONFIG_MIN_STATS_INTERVAL 0.1
#define TLSPYO_CONFIG_MAX_STATS_INTERVAL 86400

/* Which keys a file gave: command-line options override them, and
 * anything absent keeps the library's default. */
typedef enum {
  TLSPYO_CONFIG_ADDRESS           = 1 << 0,
  TLSPYO_CONFIG_PORT              = 1 << 1,
  TLSPYO_CONFIG_SECURITY          = 1 << 2,
  TLSPYO_CONFIG_CREDENTIALS_DIR   = 1 << 3,
  TLSPYO_CONFIG_MAX_OBJECT_SIZE   = 1 << 4,
  TLSPYO_CONFIG_HANDSHAKE_TIMEOUT = 1 << 5,
  TLSPYO_CONFIG_GROUPS            = 1 << 6,
  TLSPYO_CONFIG_LIMITS            = 1 << 7,
  TLSPYO_CONFIG_USERS             = 1 << 8,
  TLSPYO_CONFIG_STATS_INTERVAL    = 1 << 9,
  TLSPYO_CONFIG_CLIENT_CERTIFICATES_DIR = 1 << 10,
  TLSPYO_CONFIG_STATE_DIRECTORY   = 1 << 11,
  TLSPYO_CONFIG_SESSION_TIMEOUT   = 1 << 12,
} TlspyoConfigFields;

/* The "limits" object: each key sets the TlspyoRelay property of the same
 * name (with - for _). */
typedef enum {
  TLSPYO_CONFIG_MAX_CONNECTIONS             = 1 << 0,
  TLSPYO_CONFIG_MAX_CONNECTIONS_PER_ADDRESS = 1 << 1,
  TLSPYO_CONFIG_MAX_AUTH_FAILURES           = 1 << 2,
  TLSPYO_CONFIG_AUTH_BLOCK_TIME             = 1 << 3,
  TLSPYO_CONFIG_AUTH_FAILURE_DELAY          = 1 << 4,
  TLSPYO_CONFIG_MAX_GROUPS_PER_ENDPOINT     = 1 << 5,
  TLSPYO_CONFIG_MAX_QUEUED_BYTES            = 1 << 6,
  TLSPYO_CONFIG_MAX_IN_FLIGHT_BYTES         = 1 << 7,
} TlspyoConfigLimitFields;

typedef struct {
  guint    fields;  /* TlspyoConfigLimitFields */
  guint    max_connections;
  guint    max_connections_per_address;
  guint    max_auth_failures;
  guint    auth_block_time;
  guint    auth_failure_delay;
  guint    max_groups_per_endpoint;
  guint64  max_queued_bytes;
  guint64  max_in_flight_bytes;
} TlspyoConfigLimits;

typedef struct {
  char         *group;   /* NULL: every group ("*" in the file) */
  TlspyoRights  rights;
} TlspyoConfigGrant;

typedef struct {
  char      *name;
  char      *password_hash;  /* checked: tlspyo_relay_add_user() accepts it */
  GPtrArray *grants;         /* of TlspyoConfigGrant, in file order */
} TlspyoConfigUser;

typedef struct {
  char *name;
  int   max_count;        /* -1: no limit */
  int   max_consumables;  /* -1: no limit */
} TlspyoConfigGroup;

typedef struct {
  guint               fields;  /* TlspyoConfigFields */
  char               *address;
  guint               port;
  TlspyoSecurity      security;
  char               *credentials_dir;
  guint64             max_object_size;
  guint               handshake_timeout;
  GPtrArray          *groups;  /* of TlspyoConfigGroup, in file order */
  TlspyoConfigLimits  limits;
  GPtrArray          *users;   /* of TlspyoConfigUser, in file order */
  double              stats_interval;  /* seconds; 0: off */
  char               *client_certificates_dir;  /* mutual TLS: USER.pem files */
  char               *state_directory;  /* the durable relay's folder; NULL: in memory */
  double              session_timeout;  /* seconds the relay keeps a lost consumer's objects */
} TlspyoConfig;

TlspyoConfig *tlspyo_config_parse (const char    *data,
                                   gsize          length,
                                   GError       **error);
void          tlspyo_config_free  (TlspyoConfig  *config);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoConfig, tlspyo_config_free)

G_END_DECLS
