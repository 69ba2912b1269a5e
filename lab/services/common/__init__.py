"""Code shared by the lab's stand-in services (see svc.py)."""
