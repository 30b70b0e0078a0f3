"""Why a raw event row was quarantined: one constant per reason, in the order the checks run.

A row gets the first reason that applies (QUARANTINE_REASONS order), so each row is counted once. Whole files
that cannot be read are not rows: they are rejected (bronze.rejected_files, `lakerec.etl.rawfiles`).
"""

LINE_TOO_LONG = "line_too_long"                # more bytes than input.max_line_bytes: a prefix and the length kept
BAD_ENCODING = "bad_encoding"                  # bytes that are not UTF-8, or a JSON \\u escape of a lone surrogate
MALFORMED = "malformed"                        # a cut or unparsable line, a blank line, a JSON value that is no object,
                                               # a JSON line holding more than one value or text after its object
MISSING_COLUMN = "missing_column"              # items (csv/tsv): the row's file has no column for a required field;
                                               # an events file lacking one is rejected whole instead
WRONG_FIELD_COUNT = "wrong_field_count"        # csv/tsv: a row with more or fewer fields than its header (columns)
MISSING_USER_ID = "missing_user_id"            # the field is absent or null (blank for event_type and ts)
MISSING_ITEM_ID = "missing_item_id"
MISSING_EVENT_TYPE = "missing_event_type"
MISSING_TS = "missing_ts"
WRONG_TYPE = "wrong_type"                      # an object/array where a scalar belongs, or a value that is no number
EMPTY_ID = "empty_id"                          # user_id or item_id present but empty or only whitespace
ID_TOO_LONG = "id_too_long"                    # an id longer than input.events.max_id_length characters
BAD_TIMESTAMP = "bad_timestamp"                # ts unreadable by the timestamp rule
IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"  # before etl.valid_from or after ingest time + etl.max_future_minutes
UNKNOWN_EVENT_TYPE = "unknown_event_type"      # not in etl.event_types nor a key of etl.event_type_map

MISSING = {"user_id": MISSING_USER_ID, "item_id": MISSING_ITEM_ID, "event_type": MISSING_EVENT_TYPE,
           "ts": MISSING_TS}
QUARANTINE_REASONS = (
    LINE_TOO_LONG, BAD_ENCODING, MALFORMED, WRONG_FIELD_COUNT, MISSING_USER_ID, MISSING_ITEM_ID, MISSING_EVENT_TYPE,
    MISSING_TS, WRONG_TYPE, EMPTY_ID, ID_TOO_LONG, BAD_TIMESTAMP, IMPOSSIBLE_TIMESTAMP, UNKNOWN_EVENT_TYPE,
)
