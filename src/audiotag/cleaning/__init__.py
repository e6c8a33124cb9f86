"""Label cleaning (the ``clean_labels`` stage): find wrong labels in the noisy subset and
drop, relabel, down-weight or just report them. See :mod:`audiotag.cleaning.run`."""
