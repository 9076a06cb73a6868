"""Retention of the gateway's tables: what is past its window (rules), the deletes
(repository), the job (workers). Start `workers.run_gateway_retention` in the lifespan."""
