"""Typed errors raised by the engine; the Ansible modules turn them into fail_json."""


class ParkingError(Exception):
    """Base class: message says what is wrong and what to do."""


class ConfigError(ParkingError):
    """A module option is invalid (e.g. platform tenant id not a UUID)."""


class ConnectError(ParkingError):
    """A database cannot be reached or logged into."""


class SchemaMismatch(ParkingError):
    """The live schema lacks a column the mapping needs, or has another type."""

    def __init__(self, message, differences):
        super().__init__(message)
        self.differences = differences


class LockBusy(ParkingError):
    """Another run holds the migration's advisory lock."""


class RejectsPresent(ParkingError):
    """Rows could not be placed and allow_rejects is false."""

    def __init__(self, message, rejects):
        super().__init__(message)
        self.rejects = rejects


class GateFailed(ParkingError):
    """The in-run gate found V6 differing from what V5 says it must hold; the run is rolled back."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result
