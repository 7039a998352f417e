"""MongoDB adapters on ``pymongo.AsyncMongoClient``.

They use only what FerretDB (the local store) and MongoDB both support: single-document atomic
updates, unique and compound indexes, ``find_one_and_update`` with upsert. No multi-document
transactions, no change streams, no TTL indexes (purges are explicit queries).
"""
