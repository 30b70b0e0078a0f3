"""lakerec: a lake-native sequential recommender pipeline."""
