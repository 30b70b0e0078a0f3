"""lakerec: a lake-native sequential recommender pipeline."""
from lakerec import arrow_compat

arrow_compat.install()  # plain deltalake reads partitioned tables under pyarrow 14 (see arrow_compat)
