"""Text for the captioner: vocabulary and tokenisation, sequence decoding."""
