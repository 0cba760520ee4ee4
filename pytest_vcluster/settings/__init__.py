"""What a run and a test ask for: settings, versions, chart values, the marker, the request."""
