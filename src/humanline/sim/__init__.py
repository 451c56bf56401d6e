"""`humanline simulate`: gig agents and bots played against a running server."""
