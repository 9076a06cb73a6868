"""Running the stack: the local launcher, PostgreSQL and Meilisearch processes, migrations, CLI."""
