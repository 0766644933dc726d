"""Getting data in: the bulk DeepLesion loader, the incremental PACS bookmark import and its inbox."""
