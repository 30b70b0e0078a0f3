"""Item text: the offline sentence encoder (`encoder`) and the cached item embeddings (`embeddings`)."""
