"""Test helpers, one module a job (none of them is a test module):

- ``paths``: the repository root, tests/data and the FreeRADIUS template directory.
- ``ports``: free UDP/TCP ports on 127.0.0.1 for test servers.
- ``processes``: start a process that dies with pytest, stop it by its PID; ``wait_until``.
- ``udp``: a UDP responder thread on 127.0.0.1 (stand-in NASes and upstreams).
- ``wire``: golden packets (tests/data/*.hex) and the test dictionary.
- ``rawclient``: Status-Server and PAP Access-Request built and checked in Python.
- ``radclient``: the ``radclient`` wrapper and its output parser.
- ``mschap``: MS-CHAPv2 requests and MPPE keys (RFC 2759/3079) with a pure-Python MD4/DES.
- ``freeradius``: FreeRADIUS upstream instances and their pytest fixtures.
- ``harness``: ``op25b serve`` as a real process with a test-written config.
- ``postgres``: the shared test PostgreSQL's URL and a private cluster a test may stop.
- ``nas``: a NAS's RFC 5176 Dynamic Authorization port.
"""
