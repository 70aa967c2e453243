"""`op25b web`: the support desk's pages and HTTP API (a process of its own, beside `serve`)."""
