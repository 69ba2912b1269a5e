"""EUI-64 normalisation: V6 stores 16 uppercase hex digits and looks devices up by them."""
import re

_HEX16 = re.compile(r"^[0-9A-F]{16}$")
_SEPARATORS = re.compile(r"[\s:\-]")

# The same rule in SQL, for set-based use on staging tables: normalised EUI or NULL.
SQL_NORMALIZE = "CASE WHEN upper(regexp_replace({col}, '[\\s:-]', '', 'g')) ~ '^[0-9A-F]{{16}}$' " \
                "THEN upper(regexp_replace({col}, '[\\s:-]', '', 'g')) END"


def normalize_eui(value):
    """Return the EUI as 16 uppercase hex digits, or None when it is not a valid EUI-64.

    Accepts any case and the usual separators (':', '-', spaces). bytes (as stored by
    ChirpStack) are hex-encoded first.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).hex()
    text = _SEPARATORS.sub("", str(value)).upper()
    return text if _HEX16.match(text) else None


def eui_reject_reason(value):
    """Why a raw EUI is rejected (None when it is valid)."""
    if value is None or str(value).strip() == "":
        return "missing EUI"
    if normalize_eui(value) is None:
        return f"malformed EUI {str(value)!r}: expected 16 hex digits"
    return None


def sql_normalize(col):
    """SQL expression normalising column `col` (NULL when invalid)."""
    return SQL_NORMALIZE.format(col=col)
