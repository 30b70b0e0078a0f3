"""Table names and column names: constants, so a rename is one edit and a typo is an import error."""

BRONZE_EVENTS = "bronze.events"
BRONZE_QUARANTINE = "bronze.quarantine"
BRONZE_REJECTED_FILES = "bronze.rejected_files"  # raw files ingest could not read, one row per file and attempt
SILVER_EVENTS = "silver.events"
SILVER_SESSIONS = "silver.sessions"
SILVER_BATCHES = "silver.batches"  # bronze batch ids silver has processed
SILVER_QUALITY = "silver.quality"  # one row per silver run and quality metric
SILVER_ITEMS = "silver.items"
SILVER_ITEM_INDEX = "silver.item_index"
SILVER_SEQUENCES = "silver.sequences"
SILVER_TRAIN_WINDOWS = "silver.train_windows"
SILVER_WARM_WINDOWS = "silver.warm_windows"  # a warm-started run's training windows: the new ones + a replay sample
SILVER_ITEM_EMBEDDINGS = "silver.item_embeddings"  # one row per (item_id, encoder): text vector + content hash
GOLD_TOPN = "gold.topn"

# contract fields (raw input) and bronze/silver event columns
EVENT_ID = "event_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TS = "ts"
SESSION_ID = "session_id"
USER_AGENT = "user_agent"
VALUE = "value"
DT = "dt"  # event date (UTC), partition column of silver.events

# lineage columns stamped at ingest
BATCH_ID = "batch_id"
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"  # 1-based line of a text file, 1-based row of a Parquet file
INGESTED_AT = "ingested_at"

# quarantine
RAW = "raw"
RAW_BYTES = "raw_bytes"    # the raw row's original bytes where `raw` is not exactly them (bad encoding, a prefix)
RAW_LENGTH = "raw_length"  # the raw row's length in bytes (of the whole line, where `raw` is a prefix)
REASON = "reason"
SOURCE = "source"  # "events" | "items"

# bronze.rejected_files (the file is source_file, the reason is reason)
FILE_SIZE = "file_size"          # bytes
MODIFIED_AT = "modified_at"      # the file's modification time: a replaced copy is a new attempt
ERROR_CLASS = "error_class"      # e.g. java.io.EOFException, or missing_column
REJECTED_AT = "rejected_at"

# silver.batches and silver.quality
PROCESSED_AT = "processed_at"
METRIC = "metric"
DETAIL = "detail"

# items
TITLE = "title"
DESCRIPTION = "description"
CATEGORIES = "categories"
ITEM_IDX = "item_idx"  # dense integer id used by models, 1..n (0 is padding)
PUBLISHED = "published"  # optional catalog date (MovieLens release_date): the newest-items cold-start protocol

# silver.item_embeddings
ENCODER = "encoder"
CONTENT_HASH = "content_hash"  # sha-256 of the text that was embedded
DIM = "dim"
EMBEDDING = "embedding"
EMBEDDED_AT = "embedded_at"

# gold.topn
RANK = "rank"
SCORE = "score"
REASON_ITEM_ID = "reason_item_id"  # the history item a recommendation comes from (null: fallback)
REASON_KIND = "reason_kind"  # "history" | "popular"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
SILVER_VERSION = "silver_version"
GENERATED_AT = "generated_at"

# silver.sequences (one row per user; fixed-length arrays of item_idx, left-padded with 0)
N_EVENTS = "n_events"
HISTORY = "history"  # every item_idx of the user's history, in order (variable length)
HISTORY_TYPES = "history_types"  # the event type of each history item (the serving rule's type filter)
TRAIN_INPUT = "train_input"
TRAIN_TARGET = "train_target"
VALID_INPUT = "valid_input"
VALID_TARGET = "valid_target"
TEST_INPUT = "test_input"
TEST_TARGET = "test_target"
SCORE_INPUT = "score_input"
WINDOW = "window"  # silver.train_windows: 0 = the newest window of a user's training history
