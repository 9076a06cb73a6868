"""Code the three services share: settings, database, auth, errors, middleware, contracts.

`shared` never imports `services` (a test checks this).
"""
