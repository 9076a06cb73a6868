"""Outbound webhooks: subscriptions (router), fan-out and delivery workers (workers), the SSRF
guard (ssrf). Wire `router.router` and start `workers.run_fanout` / `workers.run_deliveries`
in the gateway's lifespan."""
