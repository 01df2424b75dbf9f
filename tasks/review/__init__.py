"""The human-review queue: what becomes a review item, how corrections are checked, the files and Label Studio
tasks items travel in, and the connection to Label Studio."""
