"""The currencies the emulator accepts: ISO 4217's circulating ones, as Stripe refuses any other code.

Stripe's own list is a subset of ISO 4217 that varies by account country; the emulator accepts every
circulating currency (ISO 4217 list one, 2025), so code that sends a real currency never fails here
while Stripe would take it. Left out, as on Stripe: fund codes (``bov``, ``che``, ``chw``, ``clf``,
``cou``, ``mxv``, ``usn``, ``uyi``, ``uyw``), precious metals, SDR and the test codes (``xau``, ``xdr``,
``xts``, ``xxx``…). ``ang`` stays: Stripe still lists it although ``xcg`` replaced it in 2025.
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
ISO_4217 = frozenset(_CODES.split())

# Stripe's message lists its currencies, usd first and the others alphabetically.
SUPPORTED = ", ".join(["usd", *sorted(ISO_4217 - {"usd"})])


def invalid_currency_message(value: str) -> str:
    return f"Invalid currency: {value}. Stripe currently supports these currencies: {SUPPORTED}"
