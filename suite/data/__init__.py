"""Input pipelines: dataset readers (tfds or local files) and tf.data plumbing."""
