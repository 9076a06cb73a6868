"""Retention of the gateway's tables: what is past its window (rules), the deletes
(repository), the job (workers). `workers.gateway_retention` is one of the app's workers."""
