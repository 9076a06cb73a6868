"""Retention of listing's tables: what is past its window (rules), the deletes (repository),
the job (workers). Start `workers.run_listing_retention` in the lifespan."""
