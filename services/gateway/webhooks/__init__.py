"""Outbound webhooks: subscriptions (router), fan-out and delivery workers (workers), the SSRF
guard (ssrf). The gateway wires `router.router` and runs `workers.fanout_workers` and
`workers.delivery_workers`."""
