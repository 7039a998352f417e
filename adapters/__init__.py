"""One module or package per outside system: Stripe, MongoDB stores, Kafka, shortener."""
