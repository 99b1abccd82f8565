"""Sans-I/O network pieces: addresses, DNS, connect logic, CAOs, routes and netlink decoding.

Nothing here touches a socket or the selector; ``lwspy.core`` and ``lwspy.roles`` do.
"""
