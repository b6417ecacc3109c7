"""The service: the layer above the ledger core, projections, audit and workers.

It holds the HTTP adapters (`http`), the app factory (`app`), the command line
(`cli`) and the wiring they share (`wiring`): the only code that imports all of
the packages below it and puts them together.
"""
