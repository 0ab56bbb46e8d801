"""The three storage tiers (hot, warm, cold) and point-in-time retrieval."""
