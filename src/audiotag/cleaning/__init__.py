"""Label cleaning (the ``clean_labels`` stage)."""
