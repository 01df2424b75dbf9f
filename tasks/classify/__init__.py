"""Classification: page embeddings against one prototype per label, the route from a label to an extraction schema,
the keyword rule, and the stage."""
