"""Training loops (GAN, and later mappers); resumable, with atomic checkpoints."""
