"""The currencies a ``PaymentLinkRequested`` may name: ISO 4217's circulating codes, as Stripe takes them.

The rule for ``currency`` (docs/contract.md): three ASCII letters in any case, normalised to lower case
(Stripe's form), and one of ``CURRENCIES``. A request in ``xyz`` is refused at the door
(``invalid_event``) instead of reaching Stripe.

Left out, as Stripe leaves them out: fund codes (``bov``, ``che``, ``chw``, ``clf``, ``cou``, ``mxv``,
``usn``, ``uyi``, ``uyw``), precious metals, SDR and the test codes (``xau``, ``xdr``, ``xts``, ``xxx``…).
``ang`` stays: Stripe still lists it although ``xcg`` replaced it in 2025. Which of these a connected
account can charge in depends on its country; that narrower rule stays Stripe's to apply (a refusal is
``stripe_invalid_request``).

Pure data. The local Stripe emulator keeps its own copy (``deploy/local/emulators/stripe_currencies.py``);
a unit test keeps the two equal, so neither layer imports the other.
"""

from __future__ import annotations

_CODES = """
aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd
cad cdf chf clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd
gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt
lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr
nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sos srd ssp
stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd uyu uzs ved ves vnd vuv wst xaf xcd
xcg xof xpf yer zar zmw zwg
"""
CURRENCIES: frozenset[str] = frozenset(_CODES.split())


def normalised_currency(value: str) -> str | None:
    """``value`` in lower case when it is a code of ``CURRENCIES`` in any case of ASCII letters, else None
    (``str.lower`` alone would take look-alikes such as the Kelvin sign for ``k``)."""
    code = value.lower()
    return code if value.isascii() and code in CURRENCIES else None
