"""humanline: dispatch service handing customers from AI bots to human gig agents."""

__version__ = "0.1.0"
