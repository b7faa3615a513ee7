"""Filters: small decisions over one document, each `filter(doc) -> True | (False, reason)`.

Leaves of the package: they import nothing from tokenmill but `tokenmill.doc` and each other
(quality uses words). The stages in `tokenmill/stages/filter.py` run them. url (UT1 blocklist +
banned words), language (fastText lid.176), quality (Gopher, C4, FineWeb rules), words (per
language word and sentence splitting, stop words), pii (scrubbing, never drops).
"""
