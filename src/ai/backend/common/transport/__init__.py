"""Message transport: an interface (``base``) and its Redis Streams implementation
(``redis_streams``). A RabbitMQ implementation comes later behind the same interface."""
