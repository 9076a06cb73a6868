"""IP-backed financing (issue 22): requests, banks' offers, pledges."""
