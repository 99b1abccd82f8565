"""System services, sans-I/O: SMD (message queue), lws_system state, CPD."""
