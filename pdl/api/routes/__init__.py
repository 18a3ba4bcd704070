"""One router per resource; ``ROUTERS`` is the order they are mounted in."""
