"""The control plane's manager: desired state in a watched store, and the reconcilers that make
the node's instances follow it (issue 18). :mod:`.store` holds the desired state."""
