# Shared documentation of the parking-migrate modules (doc_fragment_plugins = doc_fragments).
# One fragment per connection option; each documents the same suboptions
# (module_utils/parking/connection.py, connection_spec).

_SUBOPTIONS = r"""
    suboptions:
      login_host:
        description: Host of the PostgreSQL server.
        type: str
        default: 127.0.0.1
      login_port:
        description: Port of the PostgreSQL server.
        type: int
        default: 5432
      login_user:
        description: Role to log in as.
        type: str
        default: parking_user
      login_password:
        description: Password of O(login_user). Never logged or returned.
        type: str
        default: ""
      db:
        description: Database name.
        type: str
      ssl_mode:
        description:
          - libpq sslmode. C(verify-full) checks the server's certificate against O(ca_cert) and
            that O(login_host) is a name in it (production with a database host of its own).
        type: str
        default: prefer
        choices: [allow, disable, prefer, require, verify-ca, verify-full]
      ca_cert:
        description:
          - Path, on the host running the module, of the CA certificate(s) the server's certificate
            must chain to (libpq sslrootcert). Empty means libpq's default (~/.postgresql/root.crt).
        type: str
        default: ""
        aliases: [ssl_rootcert]
      ssl_cert:
        description: Path of a client certificate (libpq sslcert), when the server asks for one.
        type: str
        default: ""
      ssl_key:
        description: Path of the client certificate's key (libpq sslkey).
        type: str
        default: ""
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
"""


class ModuleDocFragment:
    TARGET = r"""
options:
  target:
    description:
      - Connection to the V6 database C(parking_v6) (default O(target.db)), written in one transaction.
      - The role must own the V6 tables or be a superuser (V6's policies name only the owner).
    type: dict
    default: {}
""" + _SUBOPTIONS + r"""
requirements:
  - psycopg2 on the host that runs the module
  - PostgreSQL 12 or newer
"""

    SOURCE = r"""
options:
  source:
    description:
      - Connection to the V5 database C(parking_v5) (default O(source.db)), read in one consistent snapshot.
      - Read V5 as its owner or a superuser; V5 forces row-level security on ten tables.
    type: dict
    default: {}
""" + _SUBOPTIONS

    SERVER = r"""
options:
  server:
    description:
      - Connection to the PostgreSQL server holding the V5 databases, as a role that can read
        every table (owner or superuser); O(server.db) is replaced by each database in turn.
    type: dict
""" + _SUBOPTIONS

    PLATFORM = r"""
options:
  platform:
    description: Connection to the legacy V4 database C(parking_platform) (default O(platform.db)), read only.
    type: dict
    default: {}
""" + _SUBOPTIONS

    CHIRPSTACK = r"""
options:
  chirpstack:
    description: Connection to the ChirpStack v4 database C(chirpstack) (default O(chirpstack.db)), read only.
    type: dict
    default: {}
""" + _SUBOPTIONS

    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: The real run inside one transaction that is rolled back; the same counts are returned.
  diff_mode:
    support: full
    description: Returns per-table row counts before and after as C(diff).
  platform:
    platforms: posix
    description: Runs on the controller or any host that reaches the databases.
"""

    # The modules that return no diff and run wherever the databases are reachable
    NO_DIFF = r"""
attributes:
  diff_mode:
    support: none
  platform:
    platforms: posix
"""
