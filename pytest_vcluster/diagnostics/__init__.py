"""What a failed test's report says about its vclusters, and the report header."""
