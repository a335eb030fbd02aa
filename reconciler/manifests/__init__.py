"""Loading manifests from files and stdin, validating them, locating every error."""
