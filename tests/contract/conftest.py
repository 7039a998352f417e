"""Contract suites: each port's tests run on its in-memory fake and on its real adapter (real stack).

The concurrency cases (one saga version saved by six writers, one contact linked by eight) hold on the
local FerretDB only because its build makes single-document updates atomic, as MongoDB's are
(``deploy/local/ferretdb/build.sh``, patch 3); against an unpatched FerretDB 1.24 they fail.
"""
