"""The local Stripe and URL-shortener emulators, as the package ``deploy.local.emulators``.

Launched as modules from the repository root (``python -m deploy.local.emulators.stripe_emulator``); see
the README beside this file. They are test and development tooling, so they stay out of the ``paylink``
distribution: the wheel (and the production image) carries ``domain``, ``adapters`` and ``consumer``
only, while the emulators need the ``dev`` extras (Starlette, uvicorn). ``deploy`` and ``deploy.local``
are namespace packages, importable wherever the repository root is on ``sys.path``: the working
directory of ``python -m``, pytest's root, ``PYTHONPATH=/app`` in the ``emulators`` image.
"""
