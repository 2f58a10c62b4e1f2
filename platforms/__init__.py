"""The three roles of the relay, each a small ``ROLE`` on top of ``relay``."""
