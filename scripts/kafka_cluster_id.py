"""Print a new Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

Like Kafka's own ``Uuid.randomUuid``, an id that starts with "-" is drawn again: ``kafka-storage
format -t -xyz`` reads it as an option ("argument --cluster-id/-t: expected one argument"), which
failed 1 start in 64 of a fresh Kafka (seen once in a test run).
"""

import base64
import os

while True:
    cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not cluster_id.startswith("-"):
        print(cluster_id)
        break
