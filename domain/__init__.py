"""paylink's pure domain: events, value objects, the saga, errors and ports. No I/O here."""
