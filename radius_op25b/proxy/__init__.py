"""The proxy: a thin asyncio shell (server.py) around pure parts - the client table, the RFC 5080
duplicate cache, upstream health and selection, and the relay pipeline that turns datagrams
into datagrams.
"""
