"""The headless YADTQ worker (``yadtq-worker``): consumes tasks from Kafka, runs registered
functions, writes every state change to Redis, commits offsets only after the final state is written."""
