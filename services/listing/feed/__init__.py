"""The change feed: the outbox written with every change, served in order, long-polled."""
