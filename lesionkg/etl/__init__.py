"""Getting data in: the bulk DeepLesion loader (``bulk``), the incremental PACS bookmark import
(``discovery`` of the input files, their ``preparation``, the one write ``transaction`` per batch,
the similarity ``spaces``, the ``importer`` loop and its ``report``) and its ``inbox``."""
