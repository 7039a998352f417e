"""The Stripe billing adapter (stripe-python's async ``StripeClient``)."""
