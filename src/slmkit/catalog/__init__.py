"""Known small language models, memory sizing, the hardware probe and recommendations."""
