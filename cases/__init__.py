"""Case files: incidents and rights requests on the eventsourcing library (issue 15)."""
