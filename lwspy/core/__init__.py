"""The core: context, per-thread service, wsi, vhost, protocol, sul timers, logging."""
