"""Partner exchanges: the registry, signed inbound webhooks, pull sync and the inbox worker."""
