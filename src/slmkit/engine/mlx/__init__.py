"""The MLX engine: models converted with `slm convert --to mlx`, served with mlx-lm (Apple silicon,
and the CPU build of MLX on Linux)."""
