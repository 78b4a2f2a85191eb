"""What the API and the workers share: settings, the job store, names and paths."""
