"""Retention of listing's tables: what is past its window (rules), the deletes (repository),
the job (workers). `workers.listing_retention` is one of the app's workers."""
