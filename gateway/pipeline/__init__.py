"""What every driver's output passes through before anything else sees it."""
