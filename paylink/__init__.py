"""paylink for integrators: the supported client (``paylink.client``)."""
