"""Gateway: the open catalogue, partner sync in and out, outbound webhooks."""
