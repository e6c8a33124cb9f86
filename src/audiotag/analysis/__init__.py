"""Weight analysis and the cross-model report."""
