"""Roles: one module per kind of fd, each an ops table the core loop drives."""
