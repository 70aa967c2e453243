"""The one exception tree of radius-op25b; lower layers translate their own errors into it.

Op25bError
 ├── ConfigError          the config file is unusable (names file and key)
 ├── UsageError           a command was called wrongly (exit 2)
 ├── NotFound             the subscriber/realm/session asked for does not exist
 ├── Conflict             the change would duplicate or contradict stored data
 ├── InvalidInput         a value (IP, CIDR, class, date, CSV line) is malformed (exit 2)
 ├── SchemaOutOfDate      the database is not at the migrations' head
 ├── StoreUnavailable     the database cannot be reached (SQLAlchemy errors are mapped here)
 └── PacketError          RADIUS wire problems
      ├── MalformedPacket     the bytes are not a RADIUS packet we can read
      ├── UnknownClient       the source address is not a configured client
      └── BadAuthenticator    an authenticator or Message-Authenticator does not verify
"""

from __future__ import annotations


class Op25bError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(Op25bError):
    """The configuration is unusable; the message names the file and key."""


class UsageError(Op25bError):
    """A command line that cannot be acted on."""

    exit_code = 2


class NotFound(Op25bError):
    """A named record does not exist."""


class Conflict(Op25bError):
    """The change would duplicate or contradict stored data."""


class InvalidInput(Op25bError):
    """A value given by an operator or a file is malformed: a usage error, like UsageError."""

    exit_code = 2


class SchemaOutOfDate(Op25bError):
    """The database schema is not at the head revision."""


class StoreUnavailable(Op25bError):
    """The database cannot be reached or failed underneath us."""


class PacketError(Op25bError):
    """A RADIUS packet could not be accepted."""


class MalformedPacket(PacketError):
    """The bytes are not a well-formed RADIUS packet."""


class UnknownClient(PacketError):
    """The packet came from an address that is not a configured client."""


class BadAuthenticator(PacketError):
    """An authenticator or Message-Authenticator does not verify."""
