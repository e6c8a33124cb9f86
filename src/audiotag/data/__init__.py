"""Dataset sources and the manifest that every source writes."""
