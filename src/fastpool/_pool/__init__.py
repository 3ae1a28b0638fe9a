"""The pools: the asyncio base written by hand, the threaded one generated, and their parts.

A pool base drives the core (no I/O, no waiting) and a driver (the I/O): it
waits, connects in the background, runs the hooks and the return-time reset
under their deadlines, and closes.  The parts that need no I/O are written
once, for both kinds of pool.
"""
