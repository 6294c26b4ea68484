"""Task pieces that several applications share (classification: MNIST and the classifier app)."""
