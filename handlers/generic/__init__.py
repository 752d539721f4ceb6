"""Generic steps: runbooks teams write without Python (HTTP calls to allowed hosts, PromQL
checks, patches of allowed kinds, waits, channel messages). Each module registers one handler;
`handlers/__init__.py` lists them."""
