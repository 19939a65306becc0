"""Joint-display matrices and meta-inferences: routes beside the transcripts domain's own."""
