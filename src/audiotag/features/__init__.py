"""Feature extraction (log-mel) and the on-disk feature store."""
