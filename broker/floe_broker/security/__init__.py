"""Who a Kafka client is (authentication) and what it may do (authorization)."""
