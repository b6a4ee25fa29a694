"""The admin console: web pages where operators find plans and act on them."""
