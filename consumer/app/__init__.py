"""Use cases: handle a request message, replay failed requests; the one retry policy they share."""
